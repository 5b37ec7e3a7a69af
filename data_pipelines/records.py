"""The record every dataset reader yields and every loader consumes."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """One labelled clip of a split.

    ``clip_id`` is the path relative to the dataset root as the split file
    writes it (``Drink/Drink_1_1.mp4``); ``path`` is where it lies on disk.
    """

    clip_id: str
    label: int
    path: str


@dataclasses.dataclass(frozen=True)
class SplitInfo:
    """Everything a loader needs to know about a split besides its clips."""

    dataset: str          # "synthetic", "arid10", "arid15", "dark48"
    split: str            # e.g. "split1_train"
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
