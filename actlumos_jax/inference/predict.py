"""actlumos-predict: classify video files with a trained student, one JSON line per video.

  python -m actlumos_jax.inference.predict WORKDIR_OR_ARTIFACT VIDEO_OR_DIR... [--output FILE.jsonl]
      [--top-k 5] [--window-stride FRAMES | --views TxS] [--crops S] [--batch-size 8]

WORKDIR_OR_ARTIFACT: a trained student's stage directory (``kd_student``), a
pipeline workdir (its ``kd_student`` is used), or a directory written by
``actlumos-export``. Each line is ``{"path", "top_k": [[class, probability],
...], "windows": [{"start_s", "end_s", "top_k"}, ...], ...}``, or ``{"path",
"error"}`` for a file that cannot be read (the others still run; the exit
code is then 1). Probabilities are softmax scores averaged over a window's
crops, and the video's over its windows (see ``clips`` for where windows
go). Clips of several windows and videos share a batch; videos decode in
threads while the model runs.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import tqdm

from actlumos_jax.inference import clips as clips_lib
from actlumos_jax.inference.model import Predictor, load_predictor
from data_pipelines.bad_input import InputError, run_cli
from data_pipelines.video_io import VideoError

PROG = "actlumos-predict"


@dataclasses.dataclass
class VideoResult:
    """A video's class probabilities per window (windows, crops, K) and what they were computed from."""

    path: str
    clips: clips_lib.VideoClips | None = None
    probs: np.ndarray | None = None
    error: str | None = None

    @property
    def window_probs(self) -> np.ndarray:
        return self.probs.mean(axis=1)

    @property
    def video_probs(self) -> np.ndarray:
        return self.window_probs.mean(axis=0)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _read(path: Path, predictor: Predictor, views: clips_lib.Views) -> VideoResult:
    try:
        video = clips_lib.read_clips(path, predictor.preprocessing, views)
    except VideoError as e:
        return VideoResult(str(path), error=str(e))
    return VideoResult(str(path), clips=video)


def run(predictor: Predictor, paths: Sequence[Path], views: clips_lib.Views, *, workers: int = 2,
        progress: bool | None = None) -> Iterator[VideoResult]:
    """Every video's ``VideoResult``, in the order of ``paths``.

    Videos decode in ``workers`` threads (PyAV and OpenCV release the GIL) at most
    ``2 * workers`` ahead; their clips queue up and run through the model
    ``predictor.batch_size`` at a time, so one batch may hold windows of several videos.
    """
    k = len(predictor.class_names)
    order: collections.deque[tuple[VideoResult, list[int]]] = collections.deque()  # result, [clips left]
    queue: list[tuple[VideoResult, list[int], int]] = []  # (result, counter, clip index) waiting for a batch
    bar = tqdm.tqdm(total=len(paths), unit="video", desc=PROG, disable=(None if progress is None else not progress),
                    file=sys.stderr)
    clips_done = 0
    started = time.perf_counter()

    def run_batch(items):
        nonlocal clips_done
        batch = np.stack([r.clips.clips[i] for r, _, i in items])
        probs = softmax(predictor.logits(batch))
        for (result, left, i), p in zip(items, probs):
            result.probs.reshape(-1, k)[i] = p
            left[0] -= 1
        clips_done += len(items)

    def finished() -> Iterator[VideoResult]:
        while order and order[0][1][0] == 0:
            result, _ = order.popleft()
            bar.update(1)
            bar.set_postfix(clips_per_s=f"{clips_done / max(time.perf_counter() - started, 1e-9):.1f}")
            yield result

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        pending: collections.deque = collections.deque()
        remaining = iter(paths)

        def top_up():
            while len(pending) < 2 * max(1, workers):
                path = next(remaining, None)
                if path is None:
                    return
                pending.append(pool.submit(_read, path, predictor, views))

        top_up()
        try:
            while pending:
                result = pending.popleft().result()
                top_up()
                if result.error is None:
                    video = result.clips
                    result.probs = np.zeros((len(video.windows), video.crops, k), np.float32)
                    left = [len(video.clips)]
                    queue += [(result, left, i) for i in range(len(video.clips))]
                else:
                    left = [0]
                order.append((result, left))
                while len(queue) >= predictor.batch_size:
                    run_batch(queue[:predictor.batch_size])
                    del queue[:predictor.batch_size]
                yield from finished()
            if queue:
                run_batch(queue)
                queue.clear()
            yield from finished()
        finally:
            for future in pending:
                future.cancel()
            bar.close()


def top_k(probs: np.ndarray, class_names: Sequence[str], k: int) -> list[list]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [[class_names[i], round(float(probs[i]), 6)] for i in order]


def result_json(result: VideoResult, class_names: Sequence[str], k: int, span: int = 0) -> dict:
    if result.error is not None:
        return {"path": result.path, "error": result.error}
    video = result.clips
    windows = []
    for window, probs in zip(video.windows, result.window_probs):
        start_s, end_s = video.window_seconds(window)
        windows.append({"start_s": round(start_s, 4), "end_s": round(end_s, 4), "start_frame": window.start,
                        "end_frame": min(window.end, video.num_frames), "top_k": top_k(probs, class_names, k)})
    out = {"path": result.path, "top_k": top_k(result.video_probs, class_names, k), "windows": windows,
           "num_frames": video.num_frames, "fps": round(video.fps, 4), "crops": video.crops,
           "wrapped": video.wrapped}
    if video.wrapped:
        out["note"] = (f"the video has {video.num_frames} frames, fewer than the {span} one window spans: "
                       "its frame indices wrap around, as training reads short clips")
    return out


def views_from_args(args: argparse.Namespace) -> clips_lib.Views:
    if args.views:
        if args.window_stride is not None:
            raise InputError("--views TxS places its temporal clips itself: leave out --window-stride")
        temporal, spatial = clips_lib.parse_views(args.views)
        return clips_lib.Views(temporal, spatial)
    return clips_lib.Views(None, args.crops, args.window_stride)


def _main(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    views = views_from_args(args)
    paths = clips_lib.expand_inputs(args.videos)
    predictor = load_predictor(args.model, batch_size=args.batch_size)
    if "note" in predictor.info:
        print(f"{PROG}: {predictor.info['note']}", file=sys.stderr)
    prep = predictor.preprocessing
    k = min(args.top_k, len(predictor.class_names))
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # pylint: disable=consider-using-with
    failed = total = 0
    started = time.perf_counter()
    clips = 0
    try:
        for result in run(predictor, paths, views, workers=args.workers,
                          progress=False if args.no_progress else None):
            line = result_json(result, predictor.class_names, k, prep.span)
            total += 1
            if result.error is not None:
                failed += 1
                print(f"{PROG}: error: {result.error}", file=sys.stderr)
            else:
                clips += len(result.clips.clips)
            out.write(json.dumps(line) + "\n")
            out.flush()
    finally:
        if args.output:
            out.close()
    seconds = time.perf_counter() - started
    print(f"{PROG}: {total - failed} of {total} videos classified ({clips} clips, {clips / max(seconds, 1e-9):.1f} "
          f"clips/s; {views.describe()}){f'; {failed} could not be read' if failed else ''}"
          f"{f'; results in {args.output}' if args.output else ''}", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("model", metavar="WORKDIR_OR_ARTIFACT",
                        help="a trained student's stage directory, a pipeline workdir, or an exported artifact")
    parser.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR", help="video files, or directories searched "
                        "recursively for them")
    parser.add_argument("--output", "-o", help="write the JSON lines here instead of stdout")
    parser.add_argument("--top-k", type=int, default=5, help="classes listed per video and window (default 5)")
    parser.add_argument("--window-stride", type=int, default=None, metavar="FRAMES",
                        help="frames between sliding windows (default: one window span, no overlap)")
    parser.add_argument("--views", default=None, metavar="TxS",
                        help="multi-view testing instead of sliding windows: T temporal clips spread over the "
                             "video x S spatial crops (S in 1, 3, 5, 10), e.g. 3x3; 1x1 is the training's "
                             "evaluation view")
    parser.add_argument("--crops", type=int, default=1, choices=clips_lib.SPATIAL_VIEWS,
                        help="spatial crops per sliding window (default 1, the centre crop)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per model call (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(_main, args, verbose=args.verbose, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
