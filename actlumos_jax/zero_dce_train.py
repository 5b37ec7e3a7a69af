"""Trains Zero-DCE's DCE-Net on the frames of a dark-video dataset, without references.

    python -m actlumos_jax.zero_dce_train --dataset=synthetic --steps=2000 --out=runs/zero_dce

The official recipe (Li-Chongyi/Zero-DCE, lowlight_train.py): frames resized to
256x256, batches of 8, Adam with lr 1e-4 and L2 weight decay 1e-4 (torch's
coupled ``weight_decay``: added to the gradient before Adam), the gradient
clipped to global norm 0.1 before that, loss ``zero_dce_losses.zero_dce_loss``.
Here the frames come from the training split of the dataset, a few evenly
spaced frames per clip, held in memory as uint8. Writes ``OUT/zero_dce.npz``
(read it with ``load_zero_dce(OUT)`` or ``enhance(x, "zero_dce",
zero_dce_weights=OUT/zero_dce.npz)``) and ``OUT/train_log.json``.

The CLI runs behind the project's error boundary (``data_pipelines.bad_input.run_cli``):
a bad dataset root, split list or video prints as one ``error: ...`` message with
no traceback and exits 2; ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from actlumos_jax.models.zero_dce import WEIGHTS_FILE, DCENet, load_zero_dce, save_zero_dce  # noqa: F401
from actlumos_jax.zero_dce_losses import zero_dce_loss
from data_pipelines.bad_input import InputError, run_cli


def read_frames(dataset: str, *, root=None, split: int | None = None, subset: str = "train",
                synthetic_preset: str = "tiny", seed: int = 0, frames_per_clip: int = 2,
                size: int = 256, max_clips: int | None = None) -> np.ndarray:
    """(N, size, size, 3) uint8 frames: ``frames_per_clip`` evenly spaced frames of every clip."""
    from data_pipelines.datasets import read_split
    from data_pipelines.video_io import decode_video

    _, records = read_split(dataset, root=root, split=split, subset=subset,
                            synthetic_preset=synthetic_preset, seed=seed)
    frames = []
    for record in records[:max_clips]:
        clip = decode_video(record.path)
        for t in np.unique(np.linspace(0, len(clip) - 1, frames_per_clip).round().astype(int)):
            frame = clip[t]
            shrink = frame.shape[0] * frame.shape[1] > size * size
            frames.append(cv2.resize(frame, (size, size),
                                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
    if not frames:
        raise InputError(f"{dataset} ({subset} split) gave no clips to take frames from"
                         + (f" (max_clips={max_clips})" if max_clips is not None else ""))
    return np.stack(frames)


def make_optimizer(lr: float = 1e-4, weight_decay: float = 1e-4, clip_norm: float = 0.1):
    # torch's clip_grad_norm runs before optimizer.step, and Adam's weight_decay adds
    # wd * param to the (clipped) gradient before the moments: this order.
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.add_decayed_weights(weight_decay),
                       optax.scale_by_adam(), optax.scale(-lr))


def make_train_step(graphdef, tx):
    """The jitted pure step (params, opt_state, frames) -> (params, opt_state, total, terms)."""

    def loss_fn(params, frames):
        enhanced, curves = nnx.merge(graphdef, params)(frames)
        return zero_dce_loss(frames, enhanced, curves)

    @jax.jit
    def step(params, opt_state, frames):
        (total, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, frames)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, total, terms

    return step


def train(frames: np.ndarray, *, steps: int, batch_size: int = 8, seed: int = 0, lr: float = 1e-4,
          weight_decay: float = 1e-4, clip_norm: float = 0.1, log_every: int = 0,
          model: DCENet | None = None) -> tuple[DCENet, list[dict]]:
    """Trains on random batches of ``frames`` (uint8 or float in [0, 1]); returns the model and a log."""
    model = DCENet(rngs=nnx.Rngs(seed)) if model is None else model
    graphdef, params = nnx.split(model)
    tx = make_optimizer(lr, weight_decay, clip_norm)
    opt_state = tx.init(params)
    step = make_train_step(graphdef, tx)
    rng = np.random.default_rng(seed)
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    log = []
    start = time.time()
    for i in range(steps):
        idx = rng.choice(len(frames), batch_size, replace=len(frames) < batch_size)
        batch = jnp.asarray(frames[idx], jnp.float32) / scale
        params, opt_state, total, terms = step(params, opt_state, batch)
        if log_every and (i % log_every == 0 or i == steps - 1):
            entry = {"step": i, "loss": float(total), **{k: float(v) for k, v in terms.items()},
                     "seconds": round(time.time() - start, 1)}
            log.append(entry)
            print(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()),
                  flush=True)
    nnx.update(model, params)
    return model, log


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="synthetic", help="synthetic, arid10, arid15 or dark48")
    parser.add_argument("--root", default=None, help="dataset root (synthetic: where to generate it)")
    parser.add_argument("--split", type=int, default=None, help="official split (default: the dataset's)")
    parser.add_argument("--synthetic-preset", default="tiny")
    parser.add_argument("--seed", type=int, default=0, help="data (synthetic), init and batch order")
    parser.add_argument("--frames-per-clip", type=int, default=2)
    parser.add_argument("--max-clips", type=int, default=None)
    parser.add_argument("--size", type=int, default=256, help="frames are resized to size x size")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--clip-norm", type=float, default=0.1)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if (out / WEIGHTS_FILE).exists() and not args.overwrite:
        parser.error(f"{out / WEIGHTS_FILE} exists; pass --overwrite to replace it")
    return run_cli(_run, args, verbose=args.verbose)


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    frames = read_frames(args.dataset, root=args.root, split=args.split, synthetic_preset=args.synthetic_preset,
                         seed=args.seed, frames_per_clip=args.frames_per_clip, size=args.size,
                         max_clips=args.max_clips)
    print(f"{len(frames)} frames of {args.size}x{args.size} from {args.dataset}, "
          f"mean level {frames.mean() / 255:.3f}", flush=True)
    model, log = train(frames, steps=args.steps, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                       weight_decay=args.weight_decay, clip_norm=args.clip_norm, log_every=args.log_every)
    save_zero_dce(model, out / WEIGHTS_FILE, overwrite=args.overwrite)
    (out / "train_log.json").write_text(json.dumps({"args": vars(args), "num_frames": len(frames), "log": log},
                                                   indent=1))
    print(f"wrote {out / WEIGHTS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
