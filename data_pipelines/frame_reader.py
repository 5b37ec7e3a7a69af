"""Decode only the frames a clip sample needs, resized while decoding.

A training clip uses 64 of ~100 frames; converting every decoded frame to a
full-size RGB array would cost more than the decode itself. Here the frame
count comes from the container header, the sampler picks indices, decoding
stops after the last needed frame, and only needed frames go through one
libswscale pass that converts YUV to RGB and resizes at once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from data_pipelines.video_io import VideoError, VideoSource, _describe, _open

IndexFn = Callable[[int], Sequence[np.ndarray]]


def read_frames(
    source: VideoSource,
    indices_for_length: IndexFn,
    *,
    name: str | None = None,
    size: tuple[int, int] | None = None,
    decoder_threads: int = 1,
) -> list[np.ndarray]:
    """Frames of ``source`` at the index sets ``indices_for_length(num_frames)`` picks.

    Returns one uint8 (len(indices), H, W, 3) RGB array per index set, resized
    to ``size`` = (height, width) with bilinear libswscale when given.
    ``indices_for_length`` is called exactly once (it may draw random numbers).
    A stream that ends before its header's frame count is a ``VideoError``.
    """
    what = _describe(source, name)
    container = _open(source, name)
    reformatter = VideoReformatter()

    def to_rgb(frame: av.VideoFrame) -> np.ndarray:
        if size is None:
            return frame.to_ndarray(format="rgb24")
        height, width = size
        return reformatter.reformat(frame, width, height, "rgb24", interpolation="BILINEAR").to_ndarray()

    decoded = 0
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = decoder_threads
        header_length = int(stream.frames or 0)
        if header_length > 0:
            index_sets = [np.asarray(ix) for ix in indices_for_length(header_length)]
            needed = np.unique(np.concatenate(index_sets))
            last = int(needed[-1])
            wanted = set(needed.tolist())
            kept: dict[int, np.ndarray] = {}
            for frame in container.decode(stream):
                if decoded in wanted:
                    kept[decoded] = to_rgb(frame)
                decoded += 1
                if decoded > last:
                    break
            if decoded <= last:
                raise VideoError(
                    f"{what}: truncated video: the header says {header_length} frames "
                    f"but the stream ends after {decoded}")
        else:
            # No count in the header (e.g. some mkv/webm): decode everything.
            frames = []
            for frame in container.decode(stream):
                frames.append(to_rgb(frame))
                decoded += 1
            if not frames:
                raise VideoError(f"{what}: video stream decodes to 0 frames")
            index_sets = [np.asarray(ix) for ix in indices_for_length(len(frames))]
            kept = dict(enumerate(frames))
    except (av.FFmpegError, ValueError, OSError) as e:
        if isinstance(e, VideoError):
            raise
        raise VideoError(f"{what}: corrupt or truncated video after {decoded} frames ({e})") from e
    finally:
        container.close()
    return [np.stack([kept[int(i)] for i in ix]) for ix in index_sets]
