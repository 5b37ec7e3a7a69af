"""Class-balanced epoch orders: composition of every group, no repeats, determinism."""

import collections

import numpy as np
import pytest

from data_pipelines.bad_input import InputError
from data_pipelines.balanced import balanced_epoch_order, usable_clip_count


def _labels():
    # 6 classes with uneven counts, one class too small to ever fill a group.
    return np.repeat(np.arange(6), [9, 7, 12, 5, 8, 1])


@pytest.mark.parametrize("n_classes,n_clips", [(4, 2), (3, 3), (2, 1)])
def test_every_group_has_n_classes_times_n_clips(n_classes, n_clips):
    labels = _labels()
    order = balanced_epoch_order(labels, n_classes, n_clips, seed=3, epoch=0)
    group = n_classes * n_clips
    assert len(order) % group == 0 and len(order) > 0
    assert len(set(order.tolist())) == len(order)  # without replacement
    for g in order.reshape(-1, group):
        counts = collections.Counter(labels[g].tolist())
        assert len(counts) == n_classes and set(counts.values()) == {n_clips}
        # Clips of one class sit together, n_clips at a time.
        assert all(len(set(labels[g][k:k + n_clips])) == 1 for k in range(0, group, n_clips))
    # "As far as possible": after the epoch, fewer than n_classes classes could still fill a slot.
    left = collections.Counter(labels[np.setdiff1d(np.arange(len(labels)), order)].tolist())
    assert sum(1 for c in left.values() if c >= n_clips) < n_classes


def test_deterministic_in_seed_and_epoch():
    labels = _labels()
    a = balanced_epoch_order(labels, 4, 2, seed=0, epoch=1)
    assert np.array_equal(a, balanced_epoch_order(labels, 4, 2, seed=0, epoch=1))
    assert not np.array_equal(a, balanced_epoch_order(labels, 4, 2, seed=0, epoch=2))
    assert not np.array_equal(a, balanced_epoch_order(labels, 4, 2, seed=1, epoch=1))


def test_fixed_length_refills_without_repeating_inside_a_group():
    labels = _labels()
    order = balanced_epoch_order(labels, 4, 2, seed=0, epoch=0, num_groups=12)
    assert len(order) == 96
    for g in order.reshape(-1, 8):
        assert len(set(g.tolist())) == 8
        assert sorted(collections.Counter(labels[g].tolist()).values()) == [2, 2, 2, 2]
    assert 5 not in set(labels[order].tolist())  # a 1-clip class can never fill a slot


def test_too_few_classes_is_a_clear_error():
    with pytest.raises(InputError, match=r"config.train.batch_size=6 hold 3 classes x config.train.clips_per_class=2 "
                                         r"clips, .* only 2 of the 3 classes have that many"):
        balanced_epoch_order(np.array([0, 0, 1, 1, 2]), 3, 2, seed=0, epoch=0)
    assert usable_clip_count(np.array([0, 0, 1, 1, 2]), 2) == 4


@pytest.mark.parametrize("n_classes, n_clips, message", [
    (4, 0, r"need config.train.clips_per_class >= 1, got 0"),
    (0, 16, r"config.train.batch_size must be at least config.train.clips_per_class=16"),
])
def test_a_batch_that_cannot_be_balanced_names_the_config_fields(n_classes, n_clips, message):
    with pytest.raises(InputError, match=message):
        balanced_epoch_order(_labels(), n_classes, n_clips, seed=0, epoch=0)
