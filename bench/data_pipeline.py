"""Host input throughput: decode + sample + augment of 64x112x112 training clips.

Writes ARID-sized clips (320x240, ~100 frames, noisy and dark) to a temp dir,
then times the real loader single-process and with 2 workers. The machine may
be shared, so the headline figure is clips per CPU-second of the loader's
processes (``time.process_time`` of this process plus the grain workers' CPU
time from /proc and ``RUSAGE_CHILDREN``): that is throughput per worker core,
and it barely moves when other jobs steal the cores. Wall-clock clips/s is printed beside it. The
goal is >= 30 clips per CPU-second. Also times the on-device retinex if
actlumos_jax.enhance exists. Run: python bench/data_pipeline.py
"""

from __future__ import annotations

import os
import resource
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


def _descendant_pids() -> list[int]:
    """Live descendants of this process (grain workers, possibly via a forkserver)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [os.getpid()]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process, its live descendants and its reaped children.

    A worker's time moves from /proc to RUSAGE_CHILDREN when it is reaped, so
    the sum stays continuous across worker exits.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += children.ru_utime + children.ru_stime
    for pid in _descendant_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def measure(records, num_workers: int, warmup: int, batches: int) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second) of the training loader.

    The window opens after ``warmup`` batches: worker start-up, imports and
    codec set-up are not throughput, and the clips the workers decoded ahead
    while idle would otherwise come free (a 10-batch window right after
    start-up reads ~1.8x too high). After the warm-up the consumer waits on
    the workers, so the window sees their steady rate.
    """
    info = SplitInfo("bench", "train", tuple(str(i) for i in range(11)))
    loader = make_loader(records, info, mode="supervised", train=True, global_batch_size=BATCH,
                         num_frames=NUM_FRAMES, num_workers=num_workers, seed=0)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    cpu_start, wall_start = _cpu_seconds(), time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    wall = time.perf_counter() - wall_start
    cpu = _cpu_seconds() - cpu_start
    assert batch["video"].shape == (BATCH, NUM_FRAMES, 112, 112, 3)
    if num_workers:
        it.close()
    return batches * BATCH / wall, batches * BATCH / cpu


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
        wall, per_cpu = measure(records, 0, warmup=1, batches=8)
        print(f"single process: {per_cpu:.1f} clips per CPU-second (per core), {wall:.1f} clips/s wall")
        wall, per_cpu = measure(records, 2, warmup=12, batches=24)
        print(f"2 workers: {wall:.1f} clips/s wall total ({wall / 2:.1f} per worker), "
              f"{per_cpu:.1f} clips per CPU-second (per core, workers + main process)")
    retinex_cost()


if __name__ == "__main__":
    main()
