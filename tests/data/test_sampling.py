"""Temporal sampling against direct loops over the reference's rules."""

import numpy as np
import pytest

from data_pipelines import sampling


def _reference_clip(length, num_frames, stride, start):
    return [(start + k * stride) % length for k in range(num_frames)]


@pytest.mark.parametrize("length,num_frames,stride", [(100, 64, 1), (100, 16, 2), (40, 64, 1), (7, 8, 3), (64, 64, 1)])
def test_eval_clip_is_centred_or_wraps(length, num_frames, stride):
    span = (num_frames - 1) * stride + 1
    start = (length - span) // 2 if length > span else 0
    got = sampling.clip_indices(length, num_frames, stride)
    assert got.tolist() == _reference_clip(length, num_frames, stride, start)


def test_train_offsets_cover_every_valid_start_uniformly():
    rng = np.random.default_rng(0)
    length, num_frames, stride = 20, 5, 2  # span 9 -> starts 0..11
    starts = [sampling.clip_indices(length, num_frames, stride, rng=rng)[0] for _ in range(6000)]
    counts = np.bincount(starts, minlength=12)
    assert len(counts) == 12 and counts.min() > 350  # ~500 each
    for s in range(12):
        assert sampling.clip_indices(length, num_frames, stride, rng=np.random.default_rng(s)).tolist() in [
            _reference_clip(length, num_frames, stride, k) for k in range(12)]


def test_short_clip_wraps_modulo_length():
    got = sampling.clip_indices(5, 12, 1, rng=np.random.default_rng(0))
    assert got.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="clip_length"):
        sampling.clip_indices(0, 8)
    with pytest.raises(ValueError, match="slow > fast"):
        sampling.ssl_indices(100, 8, (2, 2), "spatiotemporal", np.random.default_rng(0))
    with pytest.raises(ValueError, match="ssl_variant"):
        sampling.ssl_indices(100, 8, (1, 2), "both", np.random.default_rng(0))


def test_ssl_variants():
    rng = np.random.default_rng(1)
    for _ in range(20):
        st = sampling.ssl_indices(100, 16, (1, 3), "spatiotemporal", rng)
        assert np.all(np.diff(st.fast) == 1) and np.all(np.diff(st.slow) == 3)
        assert not st.same_spatial_draw
        tm = sampling.ssl_indices(100, 16, (1, 3), "temporal", rng)
        assert np.all(np.diff(tm.slow) == 3) and tm.same_spatial_draw
        sp = sampling.ssl_indices(100, 16, (1, 3), "spatial", rng)
        assert np.array_equal(sp.fast, sp.slow) and not sp.same_spatial_draw
    # Independent offsets: the two views do not always start together.
    starts = [tuple(x[0] for x in (v.fast, v.slow)) for v in
              (sampling.ssl_indices(100, 16, (1, 2), "spatiotemporal", rng) for _ in range(50))]
    assert len({a - b for a, b in starts}) > 5
