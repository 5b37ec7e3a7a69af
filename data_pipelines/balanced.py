"""Class-balanced epochs for SupCon: every group is n_classes x n_clips.

SupCon needs positives in every batch; a uniformly shuffled batch of 8 from 11
classes often has none. Each group of ``n_classes * n_clips`` consecutive
positions holds ``n_clips`` clips of each of ``n_classes`` distinct classes.
Within an epoch no clip repeats; the epoch ends when fewer than ``n_classes``
classes have ``n_clips`` unused clips left. Classes are picked with probability
proportional to their unused clips, so classes run out together and an epoch
uses as many clips as possible. Deterministic in (seed, epoch).
"""

from __future__ import annotations

import numpy as np

from data_pipelines.bad_input import InputError


def balanced_epoch_order(
    labels: np.ndarray, n_classes: int, n_clips: int, *, seed: int, epoch: int,
    num_groups: int | None = None,
) -> np.ndarray:
    """Record indices of one epoch, int64 (num_groups * n_classes * n_clips,).

    Group g occupies positions [g * n_classes * n_clips, (g + 1) * ...), class
    by class: n_clips clips of its first class, then of its second, ...
    With ``num_groups=None`` the epoch stops when fewer than ``n_classes``
    classes have ``n_clips`` unused clips. With a fixed ``num_groups`` (a loader
    needs the same length every epoch) a class that runs short is refilled
    with a fresh permutation of its clips: a clip then repeats within the
    epoch, never within a group.
    """
    labels = np.asarray(labels)
    if n_clips < 1:
        raise InputError(f"class-balanced batches (config.train.class_balanced) need config.train.clips_per_class "
                         f">= 1, got {n_clips}")
    if n_classes < 1:
        raise InputError(
            f"class-balanced batches (config.train.class_balanced) hold config.train.batch_size / "
            f"config.train.clips_per_class classes, here {n_classes}: config.train.batch_size must be at least "
            f"config.train.clips_per_class={n_clips} (and a multiple of it)")
    classes, counts = np.unique(labels, return_counts=True)
    usable = int((counts >= n_clips).sum())
    if usable < n_classes:
        raise InputError(
            f"class-balanced batches (config.train.class_balanced) of config.train.batch_size="
            f"{n_classes * n_clips} hold {n_classes} classes x config.train.clips_per_class={n_clips} clips, so "
            f"they need {n_classes} classes with at least {n_clips} clips each; only {usable} of the "
            f"{len(classes)} classes have that many. Lower config.train.batch_size (fewer classes per batch) "
            f"or config.train.clips_per_class, or set config.train.class_balanced=False")
    rng = np.random.default_rng([seed, epoch, 0xBA1])
    members = [np.flatnonzero(labels == c) for c in classes]
    pools = [list(rng.permutation(m)) for m in members]
    order: list[int] = []
    while num_groups is None or len(order) < num_groups * n_classes * n_clips:
        fresh = np.array([len(p) if len(p) >= n_clips else 0 for p in pools], np.float64)
        if (fresh > 0).sum() < n_classes:
            if num_groups is None:
                break
            # Refill only as a last resort: classes with unused clips come first.
            fresh = fresh + np.where(counts >= n_clips, 1e-3, 0.0)
        picked = rng.choice(len(pools), size=n_classes, replace=False, p=fresh / fresh.sum())
        for c in picked:
            if len(pools[c]) < n_clips:
                leftover = pools[c]
                refill = [i for i in rng.permutation(members[c]) if i not in leftover]
                pools[c] = leftover + refill
            order.extend(int(i) for i in pools[c][:n_clips])
            del pools[c][:n_clips]
    return np.asarray(order, np.int64)


def usable_clip_count(labels: np.ndarray, n_clips: int) -> int:
    """Clips of the classes that can fill a group (>= ``n_clips`` clips)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return int(counts[counts >= n_clips].sum())
