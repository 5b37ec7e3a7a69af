"""Throughput of actlumos-predict on this machine: the library model against the exported artifact.

  python -m bench.predict --preset tiny                 # the demo's student: 8 frames 4 apart, 32x32
  python -m bench.predict --preset full --frames 16 64  # the paper's R(2+1)D-34 student, 112x112

For each clip length: a student with random weights (throughput does not depend
on their values) is exported with ``actlumos-export``'s function; both the
library ``Predictor`` and the artifact's then classify the same video files
through ``predict.run`` (decode, crop, batch, model). Printed per model: clips/s
end to end (after one warm-up video, so compilation is not counted), clips/s of
the model alone on decoded clips, and the export's time and size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from actlumos_jax.inference import clips as clips_lib
from actlumos_jax.inference import export, predict
from actlumos_jax.inference.model import Predictor, Preprocessing, jitted_logits, load_artifact
from actlumos_jax.train import warm_start
from data_pipelines.video_io import write_video

NUM_CLASSES = 11


def config_for(preset: str, frames: int | None):
    from configs import kd_student  # pylint: disable=g-import-not-at-top

    config = kd_student.get_config("size=paper" if preset == "full" else "size=tiny")
    if frames:
        config.data.num_frames = frames
    return config


def random_student(config, seed: int = 0) -> nnx.Module:
    """The stage's Student with NumPy-drawn weights (no eager initialisation: one compile per initialiser)."""
    abstract = nnx.eval_shape(lambda: warm_start.model_for_config(config.model, NUM_CLASSES, "student", seed))
    graphdef, params, stats, rest = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)
    rng = np.random.default_rng(seed)

    def draw(path, x):
        name = str(getattr(path[-1], "key", path[-1]))
        if "scale" in name or name.endswith("var"):
            return np.ones(x.shape, x.dtype)
        if len(x.shape) <= 1 or "mean" in name:
            return np.zeros(x.shape, x.dtype)
        return (rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)

    for state in (params, stats):
        nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(state)))
    rest = jax.tree.map(lambda x: jax.random.key(seed) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                        else np.zeros(x.shape, x.dtype), rest)
    model = nnx.merge(graphdef, params, stats, rest)
    model.eval()
    return model


def write_videos(directory: Path, count: int, frames: int, hw: tuple[int, int]) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        video = rng.integers(0, 30, (frames, *hw, 3), dtype=np.uint8)
        paths.append(directory / f"clip_{i}.mp4")
        write_video(paths[-1], video, fps=30)
    return paths


def measure(predictor: Predictor, videos: list[Path], views: clips_lib.Views) -> dict:
    list(predict.run(predictor, videos[:1], views, progress=False))  # compiles
    started = time.perf_counter()
    results = list(predict.run(predictor, videos, views, progress=False))
    seconds = time.perf_counter() - started
    clips = sum(len(r.clips.clips) for r in results)
    decoded = np.concatenate([r.clips.clips for r in results])
    started = time.perf_counter()
    predictor.logits(decoded)
    model_seconds = time.perf_counter() - started
    return {"clips": clips, "clips_per_s": clips / seconds, "model_clips_per_s": clips / model_seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--frames", type=int, nargs="*", default=None, help="clip lengths (default: the preset's)")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--video-frames", type=int, default=None, help="frames per video (default: 2 windows)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 8 (tiny), 2 (full)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here too")
    args = parser.parse_args()
    batch = args.batch_size or (8 if args.preset == "tiny" else 2)
    rows = []
    for frames in args.frames or [None]:
        config = config_for(args.preset, frames)
        prep = Preprocessing.from_config(config)
        model = random_student(config)
        names = tuple(f"class_{i}" for i in range(NUM_CLASSES))
        library = Predictor(Path("."), "workdir", names, prep, jitted_logits(model, config.model.dtype), {}, batch)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            meta = export.export_model(model, config, names, tmp / "artifact", ("cpu", "cuda"))
            artifact = load_artifact(tmp / "artifact", batch)
            (tmp / "videos").mkdir()
            videos = write_videos(tmp / "videos", args.videos, args.video_frames or 2 * prep.span, (128, 170))
            views = clips_lib.Views()
            row = {"preset": args.preset, "num_frames": prep.num_frames, "frame_stride": prep.frame_stride,
                   "crop": list(prep.crop), "batch_size": batch, "export_seconds": meta["export_seconds"],
                   "artifact_mb": round(meta["bytes"] / 1e6, 2),
                   "library": measure(library, videos, views), "artifact": measure(artifact, videos, views)}
        rows.append(row)
        print(f"{args.preset} student, {prep.num_frames} frames x {prep.crop[0]}x{prep.crop[1]}, batch {batch} "
              f"({jax.devices()[0].device_kind}): export {row['export_seconds']:.1f} s, {row['artifact_mb']} MB")
        for kind in ("library", "artifact"):
            m = row[kind]
            print(f"  {kind:8s}: {m['clips_per_s']:7.2f} clips/s end to end, {m['model_clips_per_s']:7.2f} clips/s "
                  f"model only ({m['clips']} clips)")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
