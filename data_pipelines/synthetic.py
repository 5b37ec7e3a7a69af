"""The embedded dark-action dataset: procedurally generated, laid out like ARID.

The default dataset of the demo, the tests and every config that names none.
Each clip shows an articulated actor doing one of ARID's 11 actions
(``synthetic_scene``), lit by an illumination that changes over time and
exposed to a mean luma of 2-12 % with shot and read noise, then written as
H.264 under ``<Class>/<Class>_<actor>_<take>.mp4`` with ARID's split lists
``ARID_split{1,2,3}_{train,test}.txt`` (``idx<TAB>label<TAB>Class/Class_a_b.mp4``),
split by actor. A JSON sidecar beside each clip records its lighting.

Presets (H x W, frames @ 30 fps, actors x takes per class):
  tiny  64 x 86,   24 frames, 3 x 1  ->   33 clips (tests)
  demo  128 x 170, 32 frames, 12 x 3 ->  396 clips (the CPU demo)
  full  240 x 320, 96 frames, 24 x 14 -> 3696 clips (ARID V1.0 scale)

Generation is deterministic per (preset, seed) on one machine, whatever the
worker count: each clip's randomness derives from (seed, clip index) only, and
x264 encodes on one thread (`video_io.encode_video`), as multi-threaded x264
can give other bytes on each call. Sameness across CPU kinds is not tested:
NumPy's float32 exp/log/sin may take other SIMD paths there and move a code
value.

How hard it is, ``python -m bench.synthetic_learnability`` measures: the
demo's own tiny student, trained from scratch on each input condition, with
held-out top-1 overall and on the darkest third. The lighting is set so that
the dark frames are learnable but slowly and clips with a lighting event trail
steady ones, the gap the teacher's retinex stream is for. Darker and more
frequent events (``illumination``) left the tiny model unable to learn dark
frames at all, and smaller, lower-contrast figures left it unable to learn
even bright ones in a demo's budget.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import fcntl
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tqdm

from data_pipelines.bad_input import DatasetError
from data_pipelines.synthetic_scene import CLASS_NAMES, make_actor, render_reflectance
from data_pipelines.video_io import write_video

VERSION = 8
NUM_SPLITS = 3
MANIFEST = "manifest.json"
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec.601 luma of the stored RGB.
# Relative light in the dark part of a dimming, flicker dip or switch: 2-3.3x darker. At
# 0.08-0.35 the tiny model could not learn dark frames (module docstring).
DARK_SEGMENT_LEVEL = (0.3, 0.5)


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    height: int
    width: int
    num_frames: int
    num_actors: int
    takes: int
    fps: int = 30

    @property
    def num_clips(self) -> int:
        return len(CLASS_NAMES) * self.num_actors * self.takes


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", 64, 86, 24, num_actors=3, takes=1),
    "demo": Preset("demo", 128, 170, 32, num_actors=12, takes=3),
    "full": Preset("full", 240, 320, 96, num_actors=24, takes=14),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown synthetic preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    index: int
    label: int
    actor: int   # 1-based, as in ARID file names
    take: int    # 1-based

    @property
    def clip_id(self) -> str:
        name = CLASS_NAMES[self.label]
        return f"{name}/{name}_{self.actor}_{self.take}.mp4"


def clip_specs(preset: Preset) -> list[ClipSpec]:
    """Every clip of a preset in index order (class, actor, take)."""
    specs = []
    for label in range(len(CLASS_NAMES)):
        for actor in range(1, preset.num_actors + 1):
            for take in range(1, preset.takes + 1):
                specs.append(ClipSpec(len(specs), label, actor, take))
    return specs


# ----------------------------------------------------------------------------- light and sensor

def illumination(rng: np.random.Generator, num_frames: int, h: int, w: int) -> tuple[np.ndarray, dict]:
    """(T, H, W) relative illumination, with or without a temporal event, and its description.

    Three clips in five get an event: part of the clip goes 2-3.3x darker (a
    dimming, flicker dips, a light switched on or off) or a light 3-8x brighter
    than the ambient passes across the scene. The others keep a steady light.
    With events on nine clips in ten, 3-12x darker or 6-30x brighter, the tiny
    model could not learn dark frames (module docstring).
    """
    t = np.arange(num_frames, dtype=np.float32)
    y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    tilt = rng.uniform(-0.25, 0.25)
    base = (1 - 0.2 * (x ** 2 + y ** 2) / 2) * (1 + tilt * x)
    t0, t1 = sorted(rng.uniform(0.1, 0.9, 2) * num_frames)
    t1 = max(t1, t0 + 0.15 * num_frames)
    ramp = np.clip((t - t0) / (t1 - t0), 0, 1)
    kind = rng.choice(["steady", "dimming", "flicker", "sweep", "switch"], p=[0.4, 0.2, 0.1, 0.1, 0.2])
    event: dict = {"type": str(kind)}
    spot = np.zeros((num_frames, 1, w), np.float32)
    if kind == "steady":
        ambient = 1 + 0.05 * np.sin(2 * np.pi * (t / num_frames + rng.uniform()))
    elif kind == "dimming":
        low = rng.uniform(*DARK_SEGMENT_LEVEL)
        recover = bool(rng.uniform() < 0.5)
        fade = ramp * (1 - np.clip((t - t1 - 0.1 * num_frames) / (0.15 * num_frames), 0, 1) * recover)
        ambient = 1 - (1 - low) * fade
        event.update(start_frame=round(float(t0), 2), end_frame=round(float(t1), 2), low=round(low, 4), recovers=recover)
    elif kind == "flicker":
        ambient = np.ones_like(t)
        dips = []
        for _ in range(int(rng.integers(1, 4))):
            start = int(rng.integers(0, num_frames - 1))
            length = max(1, round(num_frames * rng.uniform(0.04, 0.12)))
            low = rng.uniform(*DARK_SEGMENT_LEVEL)
            ambient[start:start + length] = np.minimum(ambient[start:start + length], low)
            dips.append([start, length, round(low, 4)])
        event["dips"] = dips  # [first frame, frames, relative level]
    elif kind == "sweep":
        ambient = np.full_like(t, rng.uniform(0.3, 0.5))
        gain, width = rng.uniform(1.2, 2.0), rng.uniform(0.35, 0.7)
        direction = 1 if rng.uniform() < 0.5 else -1
        t0 = rng.uniform(0.0, 0.4) * num_frames  # a slow pass, so the light is seen crossing
        t1 = t0 + rng.uniform(0.4, 0.6) * num_frames
        centre = direction * (-1.4 + 2.8 * np.clip((t - t0) / (t1 - t0), 0, 1))
        spot = gain * np.exp(-0.5 * ((x[None] - centre[:, None, None]) / width) ** 2)
        event.update(start_frame=round(float(t0), 2), end_frame=round(float(t1), 2), gain=round(gain, 4),
                     width=round(width, 4), direction="left_to_right" if direction > 0 else "right_to_left",
                     ambient=round(float(ambient[0]), 4))
    else:
        low = rng.uniform(*DARK_SEGMENT_LEVEL)
        turns_on = bool(rng.uniform() < 0.5)
        step = (t >= t0).astype(np.float32)
        ambient = low + (1 - low) * (step if turns_on else 1 - step)
        event.update(frame=int(np.ceil(t0)), low=round(low, 4), turns="on" if turns_on else "off")
    field = (ambient[:, None, None] + spot) * base[None]
    return field.astype(np.float32), event


def _srgb_eotf(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# 8-bit sRGB code of every linear level on a 2^-20 grid: round(255 * oetf(v))
# by one lookup instead of a power per pixel (exact but for levels within 2^-20
# of a code boundary). The grid is built from the thresholds where codes step.
_LUT_BITS = 20
_CODE_THRESHOLDS = _srgb_eotf((np.arange(1, 256) - 0.5) / 255)
_CODE_LUT = np.searchsorted(_CODE_THRESHOLDS, (np.arange(2 ** _LUT_BITS) + 0.5) / 2 ** _LUT_BITS).astype(np.uint8)


def quantise_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear levels (clipped to [0, 1]) -> 8-bit sRGB codes."""
    index = np.clip(linear * np.float32(2 ** _LUT_BITS), 0, 2 ** _LUT_BITS - 1).astype(np.int32)
    return _CODE_LUT[index]


def expose(scene: np.ndarray, rng: np.random.Generator, target_luma: float) -> tuple[np.ndarray, dict]:
    """Linear radiance (T, H, W, 3) -> dark uint8 frames whose mean luma is about ``target_luma``.

    Sensor model: electrons = k * radiance; shot noise (Poisson, variance =
    electrons) plus read noise (Gaussian), drawn together as one Gaussian of
    their summed variance; clipped at the white level; sRGB OETF; 8-bit
    rounding. The exposure k is found by bisection so that the mean luma of the
    quantised noisy frames, on a 16k-pixel sample, hits the target.
    """
    white = float(np.exp(rng.uniform(np.log(8000), np.log(30000))))
    read = float(rng.uniform(2.0, 6.0))
    noise_z = rng.standard_normal(scene.shape, dtype=np.float32)

    def develop(k, radiance, z):
        e = np.float32(k) * radiance
        return quantise_srgb((e + np.sqrt(e + np.float32(read * read)) * z) / np.float32(white))

    pixels = rng.integers(0, scene.size // 3, 16384)
    sample = [a.reshape(-1, 3)[pixels] for a in (scene, noise_z)]
    lo, hi = np.log(1e-5 * white), np.log(10 * white)
    for _ in range(20):  # the mean luma is monotone in k (noise draws fixed)
        mid = (lo + hi) / 2
        if (develop(np.exp(mid), *sample) @ _LUMA).mean() / 255 < target_luma:
            lo = mid
        else:
            hi = mid
    k = float(np.exp((lo + hi) / 2))
    frames = develop(k, scene, noise_z)
    return frames, {"white_level_electrons": round(white, 2), "read_noise_electrons": round(read, 3),
                    "exposure_electrons": round(k, 4)}


def frame_luma(frames: np.ndarray) -> np.ndarray:
    """Mean Rec.601 luma per frame of uint8 (T, H, W, 3) frames, in [0, 1]."""
    return (frames.astype(np.float32) @ _LUMA).mean(axis=(1, 2)) / 255


def render_clip(preset: Preset, seed: int, spec: ClipSpec) -> tuple[np.ndarray, dict]:
    """The uint8 (T, H, W, 3) frames of one clip and its sidecar metadata."""
    actor = make_actor(np.random.default_rng([seed, 0, spec.actor]))
    rng = np.random.default_rng([seed, 1, spec.index])
    h, w, n = preset.height, preset.width, preset.num_frames
    reflectance = render_reflectance(CLASS_NAMES[spec.label], actor, rng, h, w, n)
    field, event = illumination(rng, n, h, w)
    target = float(np.exp(rng.uniform(np.log(0.025), np.log(0.12))))
    frames, sensor = expose(reflectance * field[..., None], rng, target)
    luma = frame_luma(frames)
    meta = {"clip_id": spec.clip_id, "label": spec.label, "class_name": CLASS_NAMES[spec.label],
            "actor": spec.actor, "take": spec.take, "illumination": event, "target_mean_luma": round(target, 5),
            "mean_luma": round(float(luma.mean()), 5), "mean_luma_per_frame": [round(float(v), 5) for v in luma],
            **sensor}
    return frames, meta


# ----------------------------------------------------------------------------- on disk

def split_lists(preset: Preset, seed: int) -> dict[str, str]:
    """File name -> text of ARID_split{1,2,3}_{train,test}.txt.

    Actors are shuffled and cut in three folds; split s tests on fold s, so an
    actor is all-train or all-test within a split and tested in exactly one.
    """
    actors = np.random.default_rng([seed, 2]).permutation(np.arange(1, preset.num_actors + 1))
    folds = np.array_split(actors, NUM_SPLITS)
    specs = clip_specs(preset)
    files = {}
    for s, fold in enumerate(folds, start=1):
        test = set(fold.tolist())
        for part, keep in (("train", lambda a: a not in test), ("test", lambda a: a in test)):
            chosen = [c for c in specs if keep(c.actor)]
            files[f"ARID_split{s}_{part}.txt"] = "".join(
                f"{i}\t{c.label}\t{c.clip_id}\n" for i, c in enumerate(chosen))
    return files


def _write_clip(root: str, preset_name: str, seed: int, index: int) -> None:
    preset = get_preset(preset_name)
    spec = clip_specs(preset)[index]
    frames, meta = render_clip(preset, seed, spec)
    path = Path(root) / spec.clip_id
    write_video(path, frames, fps=preset.fps)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")


def generate(root: str | os.PathLike, preset: str = "demo", seed: int = 0, workers: int | None = None) -> dict:
    """Writes the whole dataset into ``root`` (created; must not hold a dataset) and returns the manifest.

    The manifest is written last: a root without one is incomplete.
    """
    spec = get_preset(preset)
    root = Path(root)
    if (root / MANIFEST).exists():
        raise DatasetError(f"{root}: already holds a synthetic dataset ({MANIFEST} exists)")
    root.mkdir(parents=True, exist_ok=True)
    start = time.time()
    n = spec.num_clips
    workers = workers or min(os.cpu_count() or 1, max(1, n // 32))
    with tqdm.tqdm(total=n, desc=f"synthetic/{preset} seed {seed}", unit="clip", disable=None) as bar:
        if workers == 1:
            for i in range(n):
                _write_clip(str(root), preset, seed, i)
                bar.update()
        else:
            # spawn, not fork: the caller may already run JAX's threads.
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(_write_clip, str(root), preset, seed, i) for i in range(n)]
                for future in concurrent.futures.as_completed(futures):
                    future.result()
                    bar.update()
    for name, text in split_lists(spec, seed).items():
        (root / name).write_text(text)
    counts = {name: text.count("\n") for name, text in split_lists(spec, seed).items()}
    manifest = {
        "dataset": "synthetic", "preset": preset, "seed": seed, "version": VERSION,
        "height": spec.height, "width": spec.width, "num_frames": spec.num_frames, "fps": spec.fps,
        "class_names": list(CLASS_NAMES), "num_clips": n, "num_actors": spec.num_actors, "takes": spec.takes,
        "split_counts": counts, "generation_seconds": round(time.time() - start, 2),
        "bytes": sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def is_complete(root: str | os.PathLike, preset: str, seed: int) -> bool:
    """True when ``root`` holds a finished dataset of this (preset, seed, VERSION)."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if (manifest.get("preset"), manifest.get("seed"), manifest.get("version")) != (preset, seed, VERSION):
        return False
    names = split_lists(get_preset(preset), seed)
    return all((root / name).is_file() for name in names) and all(
        (root / c.clip_id).is_file() for c in clip_specs(get_preset(preset)))


def default_root(preset: str, seed: int) -> Path:
    base = os.environ.get("ACTLUMOS_DATA_DIR")
    base = Path(base) if base else Path.home() / ".cache" / "actlumos_jax"
    return base / "synthetic" / f"{preset}-seed{seed}-v{VERSION}"


def ensure_dataset(preset: str = "demo", seed: int = 0, root: str | os.PathLike | None = None,
                   workers: int | None = None) -> Path:
    """Returns the root of the (preset, seed) dataset, generating it on first use.

    Generation goes to a temporary sibling directory renamed into place when
    complete, under an exclusive lock file; an interrupted run leaves only a
    ``.tmp-`` directory (cleared by the next run), and a process that loses a
    rename race on a shared file system takes the winner's copy.
    """
    get_preset(preset)
    root = Path(root) if root is not None else default_root(preset, seed)
    if is_complete(root, preset, seed):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(root, preset, seed):
            return root
        if root.exists():
            if any(root.iterdir()):
                raise DatasetError(
                    f"{root}: exists but is not a complete synthetic {preset} seed {seed} v{VERSION} dataset "
                    f"(missing or different {MANIFEST}); remove it or pass another root")
            root.rmdir()
        for stale in root.parent.glob(f".{root.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
        try:
            generate(tmp, preset, seed, workers)
            try:
                os.rename(tmp, root)
            except OSError:
                if not is_complete(root, preset, seed):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="dataset directory (default: the cache directory)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    root = ensure_dataset(args.preset, args.seed, args.root, args.workers)
    manifest = json.loads((root / MANIFEST).read_text())
    print(f"{root}: {manifest['num_clips']} clips, {manifest['bytes'] / 2**20:.1f} MiB, "
          f"generated in {manifest['generation_seconds']} s")


if __name__ == "__main__":
    main()
