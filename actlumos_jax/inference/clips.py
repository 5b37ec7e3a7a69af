"""Which clips of a video the model sees at inference, decoded exactly as the training's evaluation decodes them.

A *window* is one clip position: ``num_frames`` frames ``frame_stride`` apart,
covering ``span`` frames. Two ways to place windows:

* sliding windows (``stride``): as many ``span``-frame windows ``stride``
  apart as fit, the group centred in the video (the frames left over at the
  two ends are fewer than one stride). A video of ``span`` to ``span +
  stride - 1`` frames gets one window, the centred one: the clip the
  training's evaluation scores (``sampling.clip_indices`` without a rng);
* ``temporal`` clips: that many windows spread evenly from the first frame to
  the last (one: the centred clip), the multi-view testing of the video
  recognition frameworks.

A video shorter than ``span`` frames has one window whose frame indices wrap
around (modulo the length), as training reads short clips; its result says so.

Each window is cropped ``spatial`` times from the frame resized to the
stage's ``resize`` (1: the evaluation's centre crop; 3: start, centre and end of
the longer side; 5: four corners and the centre; 10: those five and their
mirror images), then converted to RGB by ``transforms.crop_yuv_to_rgb``, the
training loader's own function. Pixels stay uint8: normalisation runs inside
the model function (``model.student_logits``), as in the training step.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from actlumos_jax.inference.model import Preprocessing
from data_pipelines import sampling, transforms
from data_pipelines.bad_input import InputError
from data_pipelines.frame_reader import read_yuv_frames
from data_pipelines.video_io import probe_video

SPATIAL_VIEWS = (1, 3, 5, 10)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
                    ".ts", ".ogv")


@dataclasses.dataclass(frozen=True)
class Views:
    """``temporal`` clips (None: sliding windows, ``stride`` frames apart; None: one span) x ``spatial`` crops."""

    temporal: int | None = None
    spatial: int = 1
    stride: int | None = None

    def __post_init__(self):
        if self.temporal is not None and self.temporal < 1:
            raise InputError(f"the number of temporal clips must be >= 1, got {self.temporal}")
        if self.spatial not in SPATIAL_VIEWS:
            raise InputError(f"the number of spatial crops must be one of {SPATIAL_VIEWS}, got {self.spatial}")
        if self.stride is not None and self.stride < 1:
            raise InputError(f"the window stride must be >= 1 frame, got {self.stride}")
        if self.temporal is not None and self.stride is not None:
            raise InputError("give either temporal clips (--views TxS) or a window stride, not both")

    def describe(self) -> str:
        where = f"{self.temporal} temporal clip{'s' if self.temporal > 1 else ''}" if self.temporal else \
            f"sliding windows{f' every {self.stride} frames' if self.stride else ''}"
        return f"{where} x {self.spatial} spatial crop{'s' if self.spatial > 1 else ''}"


def parse_views(text: str) -> tuple[int, int]:
    """``"TxS"`` (e.g. ``3x3``) -> (temporal clips, spatial crops)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text or "")
    if not match:
        raise InputError(f"views must be TEMPORALxSPATIAL, e.g. 1x1 or 3x3, got {text!r}")
    temporal, spatial = int(match.group(1)), int(match.group(2))
    Views(temporal, spatial)  # validates
    return temporal, spatial


@dataclasses.dataclass(frozen=True)
class Window:
    start: int            # first frame covered
    end: int              # one past the last frame covered
    indices: np.ndarray   # the num_frames frame indices read


def plan_windows(length: int, prep: Preprocessing, views: Views) -> tuple[list[Window], bool]:
    """The windows of a ``length``-frame video, and whether it is shorter than one window (wrapped)."""
    span = prep.span
    if length < span:
        return [Window(0, length, sampling.clip_indices(length, prep.num_frames, prep.frame_stride))], True
    offsets = sampling.clip_indices(span, prep.num_frames, prep.frame_stride)  # 0, s, 2s, ...: one window
    slack = length - span
    if views.temporal is not None:
        if views.temporal == 1:
            starts = [slack // 2]  # the evaluation's centred clip
        else:
            starts = sorted({slack * i // (views.temporal - 1) for i in range(views.temporal)})
    else:
        stride = views.stride or span
        count = slack // stride + 1
        first = (length - ((count - 1) * stride + span)) // 2
        starts = [first + i * stride for i in range(count)]
    return [Window(s, s + span, s + offsets) for s in starts], False


def spatial_crops(prep: Preprocessing, count: int) -> list[transforms.CropDraw]:
    """The crop boxes of ``count`` spatial views, in the coordinates of the resized frame."""
    resize, crop = prep.resize, prep.crop
    centre = transforms.centre_crop(resize, crop)
    if count == 1:
        return [centre]
    if count == 3:
        if resize[1] >= resize[0]:  # landscape: along the width
            lefts = (0, (resize[1] - crop[1]) // 2, resize[1] - crop[1])
            return [transforms.CropDraw(centre.top, left, *crop) for left in lefts]
        tops = (0, (resize[0] - crop[0]) // 2, resize[0] - crop[0])
        return [transforms.CropDraw(top, centre.left, *crop) for top in tops]
    five = [transforms.CropDraw(top, left, *crop) for top, left in transforms.fixed_crop_offsets(resize, crop)[:5]]
    if count == 5:
        return five
    if count == 10:
        return five + [dataclasses.replace(d, flip=True) for d in five]
    raise InputError(f"the number of spatial crops must be one of {SPATIAL_VIEWS}, got {count}")


@dataclasses.dataclass
class VideoClips:
    """A decoded video's clips: uint8 (windows x crops, T, crop_h, crop_w, 3), window-major."""

    path: str
    num_frames: int
    fps: float
    windows: list[Window]
    wrapped: bool
    crops: int
    clips: np.ndarray

    def window_seconds(self, window: Window) -> tuple[float, float]:
        if self.fps <= 0:
            return float("nan"), float("nan")
        return window.start / self.fps, min(window.end, self.num_frames) / self.fps


def read_clips(path: str | os.PathLike, prep: Preprocessing, views: Views) -> VideoClips:
    """Decodes only the frames the windows need, and crops every window ``views.spatial`` times.
    Raises ``VideoError`` (naming the file) for anything unreadable."""
    info = probe_video(path)
    plan: dict = {}

    def indices(length: int):
        plan["windows"], plan["wrapped"] = plan_windows(length, prep, views)
        plan["length"] = length
        return [w.indices for w in plan["windows"]]

    yuv = read_yuv_frames(path, indices, name=os.fspath(path))
    draws = spatial_crops(prep, views.spatial)
    clips = np.empty((len(yuv) * len(draws), prep.num_frames, *prep.crop, 3), np.uint8)
    for i, window_frames in enumerate(yuv):
        for j, draw in enumerate(draws):
            clips[i * len(draws) + j] = transforms.crop_yuv_to_rgb(window_frames, draw, prep.resize, prep.crop,
                                                                   prep.interpolation)
    return VideoClips(os.fspath(path), plan["length"], info.fps, plan["windows"], plan["wrapped"], len(draws), clips)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given (whatever their extension: reading them tells); directories: the video files under them,
    sorted. A directory without any is an ``InputError``."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
            if not found:
                raise InputError(f"{path}: directory holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            paths += found
        else:
            paths.append(path)
    return paths
