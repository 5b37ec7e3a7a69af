"""Which frames of a clip a training or evaluation example uses.

Pure NumPy index functions: they map a clip length to frame indices and never
touch pixels, so the decoder can read only the frames that are needed.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

SslVariant = Literal["spatiotemporal", "spatial", "temporal"]
SSL_VARIANTS: tuple[str, ...] = ("spatiotemporal", "spatial", "temporal")


def clip_span(num_frames: int, stride: int) -> int:
    """Frames covered by ``num_frames`` samples ``stride`` apart."""
    return (num_frames - 1) * stride + 1


def clip_indices(
    clip_length: int,
    num_frames: int,
    stride: int = 1,
    *,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``num_frames`` frame indices ``stride`` apart, int64 (num_frames,).

    With ``rng`` (training) the start is uniform over every start whose span
    fits; without it (evaluation) the span is centred. A clip shorter than the
    span wraps around (indices modulo the length), as the reference loaders do.
    """
    if clip_length < 1:
        raise ValueError(f"clip_length must be >= 1, got {clip_length}")
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    slack = clip_length - clip_span(num_frames, stride)
    if slack <= 0:
        start = 0
    elif rng is None:
        start = slack // 2
    else:
        start = int(rng.integers(0, slack + 1))
    return (start + stride * np.arange(num_frames, dtype=np.int64)) % clip_length


@dataclasses.dataclass(frozen=True)
class SslIndices:
    """Frame indices of the two views of one clip, and whether they share a spatial draw."""

    fast: np.ndarray
    slow: np.ndarray
    same_spatial_draw: bool


def ssl_indices(
    clip_length: int,
    num_frames: int,
    strides: tuple[int, int],
    variant: SslVariant,
    rng: np.random.Generator,
) -> SslIndices:
    """The fast and slow views of the paper's InfoNCE pretraining (eq. 7, Table 7).

    ``spatiotemporal``: fast (stride ``strides[0]``) and slow (``strides[1]``)
    views at independent random offsets, independent spatial augmentation.
    ``spatial``: one temporal sample (fast stride) shared by both views,
    independent spatial augmentation. ``temporal``: the two rates at independent
    offsets, one spatial draw shared by both views.
    """
    fast_stride, slow_stride = strides
    if variant not in SSL_VARIANTS:
        raise ValueError(f"ssl_variant must be one of {SSL_VARIANTS}, got {variant!r}")
    if variant != "spatial" and slow_stride <= fast_stride:
        raise ValueError(f"ssl strides must be (fast, slow) with slow > fast, got {strides}")
    fast = clip_indices(clip_length, num_frames, fast_stride, rng=rng)
    if variant == "spatial":
        return SslIndices(fast, fast.copy(), same_spatial_draw=False)
    slow = clip_indices(clip_length, num_frames, slow_stride, rng=rng)
    return SslIndices(fast, slow, same_spatial_draw=variant == "temporal")
