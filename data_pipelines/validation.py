"""A validation split carved from the training split, by actor.

Checkpoints are chosen and the plateau schedule driven on this split, never on
the test split, which is scored once, at the chosen checkpoint. Clips of one
actor all land on the same side, as the official splits keep actors apart, so
validation measures generalisation to unseen people as the test does.

The actor (the group kept together) is read from ARID's file names,
``<Class>/<Class>_<a>_<b>.<ext>``: the first number, which the embedded dataset
writes as its actor. A name of any other form is its own group.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Sequence

import grain
import numpy as np

_ARID_NAME = re.compile(r"^(?P<cls>.+)_(?P<a>\d+)_(?P<b>\d+)$")


def actor_of(clip_id: str) -> str:
    stem = PurePosixPath(clip_id).stem
    match = _ARID_NAME.match(stem)
    return match["a"] if match else clip_id


def carve_by_actor(clip_ids: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``round(fraction * actors)`` actors (at least one)
    held out, drawn by ``seed``; the same ids and seed give the same carve on any machine."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    groups = [actor_of(c) for c in clip_ids]
    actors = sorted(set(groups))
    if len(actors) < 2:
        raise ValueError(f"a validation split needs clips of at least 2 actors; found {len(actors)}")
    count = min(max(1, round(fraction * len(actors))), len(actors) - 1)
    held_out = set(np.random.default_rng(seed).permutation(actors)[:count].tolist())
    is_val = np.asarray([g in held_out for g in groups])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class SubsetSource(grain.sources.RandomAccessDataSource):
    """The clips of a random-access source at ``indices``, in that order."""

    def __init__(self, source: Any, indices: Sequence[int]):
        self._source = source
        self._indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._source[int(self._indices[index])]

    def labels(self) -> np.ndarray:
        return np.asarray(self._source.labels())[self._indices]


def clip_ids(source: Any) -> list[str]:
    """The clip ids of a list of ``ClipRecord``s or of a random-access source."""
    if isinstance(source, list):
        return [r.clip_id for r in source]
    if hasattr(source, "clip_ids"):
        return list(source.clip_ids())
    return [str(source[i]["clip_id"]) for i in range(len(source))]


def split_off_validation(train: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(the rest of ``train``, its validation part), as lists for lists and sources for sources."""
    kept, held_out = carve_by_actor(clip_ids(train), fraction, seed)
    if isinstance(train, list):
        return [train[i] for i in kept], [train[i] for i in held_out]
    return SubsetSource(train, kept), SubsetSource(train, held_out)
