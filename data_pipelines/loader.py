"""The grain input pipeline: clips in, uint8 batches out, checkpointable.

Layout of the stream. A training epoch is a fixed number of global batches
(a shuffled permutation, or a class-balanced order, cut to whole batches); an
evaluation epoch visits every clip once and pads the last global batch with
``mask=False`` entries. Process p of P reads, of every global batch, only the
positions [p * B/P, (p + 1) * B/P). Every random draw is seeded by (seed,
epoch, global position), so batches do not depend on the number of workers or
processes. Decoding runs in grain workers (``mp_prefetch``); dropping bad clips
and batching run in the main process after it, so batch composition and the
skipped-clip count are exact whatever the worker count.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Literal, Sequence

import cv2
import grain
import numpy as np
from absl import flags
from absl import logging

from data_pipelines import balanced as balanced_lib
from data_pipelines import sampling
from data_pipelines import transforms
from data_pipelines.bad_input import BadInputPolicy
from data_pipelines.frame_reader import read_yuv_frames
from data_pipelines.records import ClipRecord, SplitInfo
from data_pipelines.video_io import VideoError, read_video_file

Mode = Literal["supervised", "ssl", "balanced"]
MODES = ("supervised", "ssl", "balanced")


class ClipFileSource(grain.sources.RandomAccessDataSource):
    """``ClipRecord``s as a random-access source of ``{"video": bytes, "label", "clip_id"}``."""

    def __init__(self, records: Sequence[ClipRecord]):
        self._records = tuple(records)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self._records[index]
        return {"video": read_video_file(record.path), "label": record.label, "clip_id": record.clip_id}

    def labels(self) -> np.ndarray:
        return np.asarray([r.label for r in self._records], np.int64)


class ConcatSource(grain.sources.RandomAccessDataSource):
    """Several random-access sources read as one, in order (SSL's train + test pool)."""

    def __init__(self, sources: Sequence[Any]):
        self._sources = tuple(sources)
        self._ends = np.cumsum([len(s) for s in self._sources])

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        which = int(np.searchsorted(self._ends, index, side="right"))
        return self._sources[which][index - (int(self._ends[which - 1]) if which else 0)]

    def labels(self) -> np.ndarray:
        return np.concatenate([_source_labels(s) for s in self._sources])


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Which record sits at each (epoch, global position) of the stream."""

    num_records: int
    global_batch_size: int
    local_batch_size: int
    process_index: int
    batches_per_epoch: int
    train: bool
    mode: str
    seed: int
    labels: np.ndarray | None
    balanced_classes: int
    balanced_clips: int

    @property
    def local_epoch_length(self) -> int:
        return self.batches_per_epoch * self.local_batch_size

    def global_position(self, stream_index: int) -> tuple[int, int]:
        epoch, local = divmod(stream_index, self.local_epoch_length)
        batch, slot = divmod(local, self.local_batch_size)
        return epoch, batch * self.global_batch_size + self.process_index * self.local_batch_size + slot

    def epoch_order(self, epoch: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_cache", {})
        if epoch not in cache:
            cache.clear()  # one epoch at a time; workers read epochs in order
            length = self.batches_per_epoch * self.global_batch_size
            if not self.train:
                order = np.arange(self.num_records)
            elif self.mode == "balanced":
                group = self.balanced_classes * self.balanced_clips
                order = balanced_lib.balanced_epoch_order(
                    self.labels, self.balanced_classes, self.balanced_clips,
                    seed=self.seed, epoch=epoch, num_groups=length // group)
            else:
                order = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.num_records)[:length]
            cache[epoch] = order
        return cache[epoch]

    def record_at(self, epoch: int, position: int) -> int | None:
        order = self.epoch_order(epoch)
        return int(order[position]) if position < len(order) else None


@dataclasses.dataclass(frozen=True)
class _LoadClip:
    """Grain map: stream index -> decoded, sampled, augmented example (runs in workers)."""

    source: Any
    plan: _Plan
    num_classes: int
    num_frames: int
    frame_stride: int
    ssl_strides: tuple[int, int]
    ssl_variant: str
    resize: tuple[int, int]
    crop: tuple[int, int]
    interpolation: str
    policy: BadInputPolicy

    def __call__(self, stream_index: int, _: Any) -> dict[str, Any]:
        if cv2.getNumThreads() != 1:
            # One grain worker per core already; OpenCV's pool would only contend.
            cv2.setNumThreads(1)
        epoch, position = self.plan.global_position(stream_index)
        record = self.plan.record_at(epoch, position)
        if record is None:
            return self._placeholder(epoch, bad=False)
        clip_id = f"record {record}"
        try:
            item = self.source[record]
            clip_id = str(item["clip_id"])
            label = int(item["label"])
            if not 0 <= label < self.num_classes:
                raise ValueError(f"clip {clip_id}: label {label} outside [0, {self.num_classes})")
            views = self._views(item["video"], clip_id, np.random.default_rng([self.plan.seed, epoch, position]))
        except VideoError as e:
            if self.policy is BadInputPolicy.FAIL:
                raise VideoError(f"clip {clip_id}: {e}") from e
            logging.warning("skipping clip %s: %s", clip_id, e)
            return self._placeholder(epoch, bad=True)
        return {**views, "label": np.int32(label), "mask": np.bool_(True), "_epoch": epoch, "_bad": False}

    def _views(self, video: bytes, clip_id: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        train = self.plan.train
        if self.plan.mode == "ssl":
            picked: list[sampling.SslIndices] = []

            def indices(length: int):
                picked.append(sampling.ssl_indices(length, self.num_frames, self.ssl_strides, self.ssl_variant, rng))
                return picked[0].fast, picked[0].slow

            fast, slow = read_yuv_frames(video, indices, name=clip_id)
            fast_draw = self._draw(rng, train)
            slow_draw = fast_draw if picked[0].same_spatial_draw else self._draw(rng, train)
            return {"fast": self._crop(fast, fast_draw), "slow": self._crop(slow, slow_draw)}

        def indices(length: int):
            return [sampling.clip_indices(length, self.num_frames, self.frame_stride, rng=rng if train else None)]

        (frames,) = read_yuv_frames(video, indices, name=clip_id)
        return {"video": self._crop(frames, self._draw(rng, train))}

    def _crop(self, frames, draw: transforms.CropDraw) -> np.ndarray:
        return transforms.crop_yuv_to_rgb(frames, draw, self.resize, self.crop, self.interpolation)

    def _draw(self, rng: np.random.Generator, train: bool) -> transforms.CropDraw:
        if train:
            return transforms.sample_multi_scale_crop(rng, self.resize, self.crop)
        return transforms.centre_crop(self.resize, self.crop)

    def _placeholder(self, epoch: int, bad: bool) -> dict[str, Any]:
        shape = (self.num_frames, *self.crop, 3)
        keys = ("fast", "slow") if self.plan.mode == "ssl" else ("video",)
        views = {k: np.zeros(shape, np.uint8) for k in keys}
        return {**views, "label": np.int32(0), "mask": np.bool_(False), "_epoch": epoch, "_bad": bad}


class _DropBadClipsIterator(grain.DatasetIterator):
    """Drops (training) or masks (evaluation) clips that failed to decode, and counts them.

    Each emitted element carries ``skipped``: the bad clips met since the
    previous emitted element, so batch sums add up to the exact total.
    """

    def __init__(self, parent: grain.DatasetIterator, drop: bool):
        super().__init__(parent)
        self._drop = drop
        self._pending = 0
        self._epoch = 0
        self._epoch_skipped = 0
        self._last: dict[str, Any] | None = None

    def __next__(self) -> dict[str, Any]:
        while True:
            try:
                element = next(self._parent)
            except StopIteration:
                self._report_epoch()
                if self._pending and self._last is not None:
                    # Bad clips at the very end: one masked slot carries their count.
                    element = {k: np.zeros_like(v) for k, v in self._last.items()}
                    element["skipped"] = np.int32(self._pending)
                    self._pending, self._epoch_skipped = 0, 0
                    return element
                raise
            epoch, bad = element.pop("_epoch"), element.pop("_bad")
            if epoch != self._epoch:
                self._report_epoch()
                self._epoch, self._epoch_skipped = epoch, 0
            if bad:
                self._pending += 1
                self._epoch_skipped += 1
                if self._drop:
                    continue
            element["skipped"] = np.int32(self._pending)
            self._pending = 0
            self._last = element
            return element

    def _report_epoch(self) -> None:
        if self._epoch_skipped:
            logging.warning("epoch %d: skipped %d clips that failed to decode", self._epoch, self._epoch_skipped)

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._parent.get_state(), "pending": self._pending,
                "epoch": self._epoch, "epoch_skipped": self._epoch_skipped}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._pending, self._epoch, self._epoch_skipped = state["pending"], state["epoch"], state["epoch_skipped"]


class _DropBadClips(grain.IterDataset):
    def __init__(self, parent: grain.IterDataset, drop: bool):
        super().__init__(parent)
        self._drop = drop

    def __iter__(self) -> _DropBadClipsIterator:
        return _DropBadClipsIterator(self._parent.__iter__(), self._drop)


def _stack_batch(elements: Sequence[dict[str, Any]], size: int) -> dict[str, np.ndarray]:
    """Stacks a batch and sums its ``skipped`` counts.

    A short batch only happens at the end of a finite training stream after
    clips were dropped; it is padded with ``mask=False`` slots rather than
    dropped, so its skipped count still reaches the consumer.
    """
    elements = list(elements)
    if len(elements) < size:
        blank = {k: np.zeros_like(v) for k, v in elements[0].items()}
        elements += [blank] * (size - len(elements))
    batch = {k: np.stack([e[k] for e in elements]) for k in elements[0] if k != "skipped"}
    batch["skipped"] = np.int32(sum(int(e["skipped"]) for e in elements))
    return batch


@dataclasses.dataclass
class Loader:
    """A re-iterable input pipeline; ``iter(loader)`` is checkpointable
    (``get_state()`` / ``set_state()``)."""

    dataset: grain.IterDataset
    steps_per_epoch: int
    local_batch_size: int
    global_batch_size: int

    def __iter__(self) -> grain.DatasetIterator:
        return iter(self.dataset)


def _as_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _source_labels(source: Any) -> np.ndarray:
    if hasattr(source, "labels"):
        return source.labels()
    logging.warning("balanced mode: reading all %d labels from the source (pass labels= to avoid it)", len(source))
    return np.asarray([int(source[i]["label"]) for i in range(len(source))], np.int64)


def make_loader(
    source: Sequence[ClipRecord] | grain.sources.RandomAccessDataSource,
    split_info: SplitInfo,
    *,
    mode: Mode,
    train: bool,
    global_batch_size: int,
    num_frames: int = 64,
    frame_stride: int = 1,
    ssl_strides: tuple[int, int] = (1, 2),
    ssl_variant: sampling.SslVariant = "spatiotemporal",
    resize: tuple[int, int] = (128, 170),
    crop: int | tuple[int, int] = 112,
    interpolation: str = "bilinear",
    balanced_classes: int = 4,
    balanced_clips: int = 2,
    seed: int = 0,
    num_workers: int = min(16, os.cpu_count() or 1),
    on_bad_input: str | BadInputPolicy = "fail",
    num_epochs: int | None = None,
    labels: np.ndarray | None = None,
    read_threads: int = 1,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Loader:
    """The input pipeline of one split for this JAX process.

    ``source``: ``ClipRecord``s, or a random-access source of ``{"video":
    bytes, "label", "clip_id"}`` (a TFDS ``data_source``). Batches are NumPy
    dicts with uint8 clips (T, crop, crop, 3), int32 ``label``, bool ``mask``
    and the int ``skipped`` count; evaluation (``train=False``) visits every
    clip once (``num_epochs`` forced to 1). ``labels`` spares balanced mode
    a pass over a non-``ClipRecord`` source.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if ssl_variant not in sampling.SSL_VARIANTS:
        raise ValueError(f"ssl_variant must be one of {sampling.SSL_VARIANTS}, got {ssl_variant!r}")
    policy = BadInputPolicy.parse(on_bad_input)
    if isinstance(source, (list, tuple)) and all(isinstance(r, ClipRecord) for r in source):
        source = ClipFileSource(source)
    num_records = len(source)
    if num_records == 0:
        raise ValueError(f"{split_info.dataset}/{split_info.split}: no clips to load")
    import jax  # pylint: disable=g-import-not-at-top  # workers unpickle this module; keep jax out
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % process_count:
        raise ValueError(f"global_batch_size {global_batch_size} is not divisible by {process_count} processes")
    local_batch_size = global_batch_size // process_count
    resize, crop = _as_pair(resize), _as_pair(crop)
    if crop[0] > resize[0] or crop[1] > resize[1]:
        raise ValueError(f"crop {crop} is larger than the resized frame {resize}")
    if interpolation not in transforms.INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {transforms.INTERPOLATIONS}, got {interpolation!r}")

    if mode == "balanced" and train:
        labels = _source_labels(source) if labels is None else np.asarray(labels, np.int64)
        # First: it names config.train.clips_per_class < 1 (or too few classes) instead of dividing by 0 below.
        balanced_lib.balanced_epoch_order(labels, balanced_classes, balanced_clips, seed=seed, epoch=0, num_groups=0)
        group = balanced_classes * balanced_clips
        if global_batch_size % group:
            raise ValueError(f"balanced mode: global_batch_size {global_batch_size} is not a multiple of "
                             f"{balanced_classes} classes x {balanced_clips} clips")
        batches_per_epoch = balanced_lib.usable_clip_count(labels, balanced_clips) // global_batch_size
    elif train:
        batches_per_epoch = num_records // global_batch_size
    else:
        batches_per_epoch = math.ceil(num_records / global_batch_size)
        num_epochs = 1
    if batches_per_epoch == 0:
        raise ValueError(f"{split_info.dataset}/{split_info.split}: {num_records} clips do not fill "
                         f"one global batch of {global_batch_size}")

    plan = _Plan(num_records, global_batch_size, local_batch_size, process_index, batches_per_epoch,
                 train, mode, seed, labels if mode == "balanced" else None, balanced_classes, balanced_clips)
    load = _LoadClip(source, plan, split_info.num_classes, num_frames, frame_stride, tuple(ssl_strides),
                     ssl_variant, resize, crop, interpolation, policy)
    dataset = grain.MapDataset.range(plan.local_epoch_length).repeat(num_epochs).map_with_index(load)
    buffer = max(2, local_batch_size)
    dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=buffer))
    if num_workers > 0:
        if not flags.FLAGS.is_parsed():
            # grain reads its absl flags when it starts workers; outside an
            # absl app (tests, notebooks, benches) nothing has parsed them.
            flags.FLAGS.mark_as_parsed()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                                   per_worker_buffer_size=buffer))
    dataset = _DropBadClips(dataset, drop=train)
    dataset = dataset.batch(local_batch_size, batch_fn=functools.partial(_stack_batch, size=local_batch_size))
    return Loader(dataset, batches_per_epoch, local_batch_size, global_batch_size)

