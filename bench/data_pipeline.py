"""Host input throughput: decode + sample + augment of 64x112x112 training clips.

Writes ARID-sized clips (320x240, ~100 frames, noisy and dark) to a temp dir,
then times the real loader single-process and with 2 workers, and reports
clips/s per worker core (goal >= 30). Also times the on-device retinex if
actlumos_jax.enhance exists. Run: python bench/data_pipeline.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from data_pipelines.loader import make_loader
from data_pipelines.records import ClipRecord, SplitInfo
from data_pipelines.video_io import write_video

NUM_CLIPS, NUM_FRAMES, BATCH = 24, 64, 8


def write_clips(root: Path) -> list[ClipRecord]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(NUM_CLIPS):
        length = int(rng.integers(90, 110))
        base = rng.random((1, 30, 40, 3)) * 50
        scene = np.repeat(np.repeat(base, 8, 1), 8, 2)
        drift = np.linspace(0, 20, length)[:, None, None, None]
        frames = np.clip(scene + drift + rng.normal(0, 4, (length, 240, 320, 3)), 0, 255).astype(np.uint8)
        path = root / f"clip{i}.mp4"
        write_video(path, frames, crf=23)
        records.append(ClipRecord(path.name, i % 11, str(path)))
    return records


def clips_per_second(records, num_workers: int, batches: int) -> float:
    info = SplitInfo("bench", "train", tuple(str(i) for i in range(11)))
    it = iter(make_loader(records, info, mode="supervised", train=True, global_batch_size=BATCH,
                          num_frames=NUM_FRAMES, num_workers=num_workers, seed=0))
    next(it)  # worker start-up and first decode are not throughput
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    elapsed = time.perf_counter() - start
    assert batch["video"].shape == (BATCH, NUM_FRAMES, 112, 112, 3)
    if num_workers:
        it.close()
    return batches * BATCH / elapsed


def retinex_cost() -> None:
    try:
        from actlumos_jax.enhance import multi_scale_retinex  # pylint: disable=g-import-not-at-top
    except ImportError as e:
        print(f"on-device retinex: skipped ({e})")
        return
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    x = jax.random.uniform(jax.random.key(0), (2, NUM_FRAMES, 112, 112, 3), jnp.float32)
    fn = jax.jit(multi_scale_retinex)
    fn(x).block_until_ready()
    start = time.perf_counter()
    for _ in range(3):
        fn(x).block_until_ready()
    per_clip = (time.perf_counter() - start) / 6
    print(f"on-device retinex ({jax.devices()[0].platform}): {per_clip * 1e3:.1f} ms per 64x112x112 clip")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        records = write_clips(Path(tmp))
        single = clips_per_second(records, 0, batches=6)
        print(f"single process: {single:.1f} clips/s (per core)")
        multi = clips_per_second(records, 2, batches=8)
        print(f"2 workers: {multi:.1f} clips/s total, {multi / 2:.1f} clips/s per worker core")
    retinex_cost()


if __name__ == "__main__":
    main()
