"""Video files in and out, with PyAV.

Every failure is a ``VideoError`` that names the file and what is wrong with
it, so a corrupt clip surfaces as one clear line instead of a crash deep in a
loader worker.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from pathlib import Path
from typing import Union

import av
import numpy as np

from data_pipelines.bad_input import InputError, video_file_problem

VideoSource = Union[str, os.PathLike, bytes]


class VideoError(InputError):
    """A video that cannot be read: missing, empty, truncated or corrupt, or not a file at all."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    height: int
    width: int


def _describe(source: VideoSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, bytes):
        return f"<{len(source)} bytes of video>"
    return os.fspath(source)


def _open(source: VideoSource, name: str | None):
    what = _describe(source, name)
    if isinstance(source, bytes):
        if not source:
            raise VideoError(f"{what}: empty video (0 bytes)")
        handle = io.BytesIO(source)
    else:
        problem = video_file_problem(source)
        if problem is not None:
            raise VideoError(f"{what}: {problem}")
        handle = os.fspath(source)
    try:
        container = av.open(handle, mode="r")
    except (av.FFmpegError, ValueError, OSError) as e:
        raise VideoError(f"{what}: not a readable video ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{what}: contains no video stream")
    return container


def decode_video(source: VideoSource, *, name: str | None = None, max_frames: int | None = None) -> np.ndarray:
    """Decodes every frame (or the first ``max_frames``) to uint8 (T, H, W, 3) RGB.

    ``source`` is a path or the encoded bytes (as stored in TFDS records);
    ``name`` labels errors when the source is bytes.
    """
    what = _describe(source, name)
    container = _open(source, name)
    frames = []
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    except (av.FFmpegError, ValueError, OSError) as e:
        # A truncated file often decodes a prefix and then fails; a partial clip
        # would silently train on the wrong motion, so it is an error.
        raise VideoError(f"{what}: corrupt or truncated video after {len(frames)} frames ({e})") from e
    finally:
        container.close()
    if not frames:
        raise VideoError(f"{what}: video stream decodes to 0 frames")
    return np.stack(frames)


def probe_video(source: VideoSource, *, name: str | None = None) -> VideoInfo:
    """Frame count, rate and size from the container header (no full decode)."""
    container = _open(source, name)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        return VideoInfo(int(stream.frames or 0), fps, stream.codec_context.height, stream.codec_context.width)
    finally:
        container.close()


def encode_video(frames: np.ndarray, *, fps: int = 30, codec: str = "libx264", crf: int = 18) -> bytes:
    """Encodes uint8 (T, H, W, 3) RGB frames to mp4 bytes.

    H.264 needs even sizes, so odd heights/widths are rejected rather than
    silently cropped.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"encode_video expects uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("encode_video got 0 frames")
    if h % 2 or w % 2:
        raise ValueError(f"encode_video needs even height and width for yuv420p, got {h}x{w}")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            # Dark clips live in the lowest code values; a visually lossless
            # CRF keeps their noise and quantisation, which are the point.
            # x264 on one thread, without its lookahead (rc-lookahead, mb-tree): with either, the same
            # frames gave other bytes on most calls (decoded up to 12 levels apart), even on one
            # thread. Dataset generation parallelises over clips instead.
            stream.options = {"crf": str(crf), "preset": "veryfast",
                              "x264-params": "threads=1:lookahead-threads=1:sync-lookahead=0:rc-lookahead=0:no-mbtree=1"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def read_video_file(path: str | os.PathLike) -> bytes:
    """The bytes of the video file at ``path``, as the training loader reads them.

    Every failure (not found, a directory, a symlink loop, no permission) is a
    ``VideoError`` naming the path; a 0-byte file is returned as is and refused
    by whatever decodes it.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        problem = video_file_problem(path) or f"cannot read the video file ({e.strerror or e})"
        raise VideoError(f"{os.fspath(path)}: {problem}") from e


def write_video(path: str | os.PathLike, frames: np.ndarray, **encode_kwargs) -> None:
    """Writes ``frames`` to ``path`` atomically: a crash never leaves half a file."""
    data = encode_video(frames, **encode_kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
