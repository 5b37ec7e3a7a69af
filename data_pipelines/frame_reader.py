"""Decode only the frames a clip sample needs, as 4:2:0 YUV planes.

A training clip uses 64 of ~100 frames, and its 112x112 crop is a fraction of
each frame. So the frame count comes from the container header, the sampler
picks indices, decoding stops after the last needed frame, and the needed
frames are kept as the decoder's own Y, U and V planes (a memcpy, no colour
conversion). Cropping, resizing and YUV -> RGB then run once, on the crop
only (``transforms.crop_yuv_to_rgb``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from data_pipelines.video_io import VideoError, VideoSource, _describe, _open

IndexFn = Callable[[int], Sequence[np.ndarray]]

# Luma weights (Kr, Kb) of the YUV matrices libswscale knows, by AVColorSpace.
# Unspecified (2) is BT.601, as libswscale assumes for SD video.
LUMA_WEIGHTS = {
    1: (0.2126, 0.0722),  # BT.709
    2: (0.299, 0.114),  # unspecified
    4: (0.30, 0.11),  # FCC
    5: (0.299, 0.114),  # BT.470BG (BT.601 625-line)
    6: (0.299, 0.114),  # SMPTE 170M (BT.601 525-line)
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
}
_NATIVE_FORMATS = ("yuv420p", "yuvj420p")
_AVCOL_RANGE_JPEG = 2
_AVCOL_SPC_BT470BG = 5


@dataclasses.dataclass(frozen=True)
class YuvClip:
    """Frames ``rows`` of shared 4:2:0 planes, and how to turn them into RGB.

    ``y`` is uint8 (N, H, W); ``u`` and ``v`` are (N, ceil(H/2), ceil(W/2)).
    Several clips of one video (the two SSL views) share the planes.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    rows: np.ndarray
    colorspace: int
    full_range: bool

    @property
    def frame_hw(self) -> tuple[int, int]:
        return self.y.shape[1], self.y.shape[2]

    def __len__(self) -> int:
        return len(self.rows)


def yuv_to_rgb_matrix(colorspace: int, full_range: bool) -> np.ndarray:
    """float32 (3, 4) affine map from 8-bit (Y, U, V, 1) to 8-bit (R, G, B).

    The standard Y'CbCr equations: R = Y + 2(1 - Kr) Cr, B = Y + 2(1 - Kb) Cb,
    G = (Y - Kr R - Kb B) / Kg, with limited-range inputs (Y in [16, 235], Cb/Cr
    in [16, 240]) stretched to [0, 255] unless ``full_range``.
    """
    kr, kb = LUMA_WEIGHTS[colorspace]
    kg = 1.0 - kr - kb
    y_gain, c_gain = (1.0, 1.0) if full_range else (255.0 / 219.0, 255.0 / 224.0)
    y_offset = 0.0 if full_range else 16.0
    coeffs = np.array([
        [y_gain, 0.0, 2 * (1 - kr) * c_gain],
        [y_gain, -2 * kb * (1 - kb) / kg * c_gain, -2 * kr * (1 - kr) / kg * c_gain],
        [y_gain, 2 * (1 - kb) * c_gain, 0.0],
    ])
    offsets = -coeffs @ np.array([y_offset, 128.0, 128.0])
    return np.concatenate([coeffs, offsets[:, None]], axis=1).astype(np.float32)


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    rows = np.frombuffer(plane, np.uint8)[: plane.height * plane.line_size]
    return rows.reshape(plane.height, plane.line_size)[:, : plane.width]


class _PlaneStore:
    """Copies the planes of kept frames into preallocated arrays."""

    def __init__(self, what: str, count: int):
        self._what, self._count = what, count
        self._reformatter = VideoReformatter()
        self.planes: list[np.ndarray] | None = None
        self.colorspace, self.full_range = 2, False

    def add(self, row: int, frame: av.VideoFrame) -> None:
        colorspace, full_range = frame.colorspace, frame.color_range == _AVCOL_RANGE_JPEG
        if frame.format.name not in _NATIVE_FORMATS or colorspace not in LUMA_WEIGHTS:
            # Rare formats (4:2:2, 4:4:4, RGB codecs, 10-bit, ...): one libswscale
            # pass to BT.601 limited-range 4:2:0, then the common path.
            frame = self._reformatter.reformat(frame, format="yuv420p", dst_colorspace="ITU601",
                                               dst_color_range="MPEG")
            colorspace, full_range = _AVCOL_SPC_BT470BG, False
        else:
            full_range = full_range or frame.format.name == "yuvj420p"
        planes = [_plane(p) for p in frame.planes]
        if self.planes is None:
            self.planes = [np.empty((self._count, *p.shape), np.uint8) for p in planes]
            self.colorspace, self.full_range = colorspace, full_range
        elif planes[0].shape != self.planes[0].shape[1:]:
            raise VideoError(f"{self._what}: frame size changes mid-stream from "
                             f"{self.planes[0].shape[1:]} to {planes[0].shape}")
        for store, plane in zip(self.planes, planes):
            store[row] = plane

    def clips(self, index_sets: Sequence[np.ndarray], row_of: np.ndarray) -> list[YuvClip]:
        y, u, v = self.planes
        return [YuvClip(y, u, v, row_of[ix], self.colorspace, self.full_range) for ix in index_sets]


def read_yuv_frames(
    source: VideoSource,
    indices_for_length: IndexFn,
    *,
    name: str | None = None,
    decoder_threads: int = 1,
) -> list[YuvClip]:
    """Frames of ``source`` at the index sets ``indices_for_length(num_frames)`` picks.

    Returns one ``YuvClip`` per index set; each needed frame is decoded and
    stored once. ``indices_for_length`` is called exactly once (it may draw
    random numbers). Decoding stops after the last needed frame. A stream that
    ends before its header's frame count is a ``VideoError``.
    """
    what = _describe(source, name)
    container = _open(source, name)
    decoded = 0
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = decoder_threads
        header_length = int(stream.frames or 0)
        if header_length > 0:
            index_sets = [np.asarray(ix, np.int64) for ix in indices_for_length(header_length)]
            needed = np.unique(np.concatenate(index_sets))
            if needed[0] < 0 or needed[-1] >= header_length:
                raise ValueError(f"frame indices outside [0, {header_length})")
            last = int(needed[-1])
            row_of = np.full(last + 1, -1, np.int64)
            row_of[needed] = np.arange(len(needed))
            store = _PlaneStore(what, len(needed))
            for frame in container.decode(stream):
                if row_of[decoded] >= 0:
                    store.add(int(row_of[decoded]), frame)
                decoded += 1
                if decoded > last:
                    break
            if decoded <= last:
                raise VideoError(
                    f"{what}: truncated video: the header says {header_length} frames "
                    f"but the stream ends after {decoded}")
        else:
            # No count in the header (e.g. some mkv/webm): keep everything.
            frames = list(container.decode(stream))
            decoded = len(frames)
            if not frames:
                raise VideoError(f"{what}: video stream decodes to 0 frames")
            store = _PlaneStore(what, decoded)
            for row, frame in enumerate(frames):
                store.add(row, frame)
            index_sets = [np.asarray(ix, np.int64) for ix in indices_for_length(decoded)]
            row_of = np.arange(decoded)
    except (av.FFmpegError, ValueError, OSError) as e:
        if isinstance(e, VideoError):
            raise
        raise VideoError(f"{what}: corrupt or truncated video after {decoded} frames ({e})") from e
    finally:
        container.close()
    return store.clips(index_sets, row_of)
