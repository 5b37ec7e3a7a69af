"""Is the synthetic dataset learnable, and not trivially? The demo's own student on CPU.

Trains the ``size=tiny`` Student (R(2+1)D-10 at 1/8 width + the temporal
encoder, exactly what ``configs/kd_student.py`` builds) from scratch with
cross-entropy on split 1 of a synthetic preset, read with the real ARID reader
and sampled like the tiny config (8 frames 4 apart, 36 x 48, random 32 x 32
crop and flip). It reports held-out top-1 overall and on the darkest third of
the test clips (by the sidecar's mean luma) for each input condition:
  dark    the frames as stored (what the student sees);
  autogain  the dark frames times one gain per clip that lifts its mean to
          0.45: is a global exposure correction enough, without retinex?
  msr     multi-scale retinex of the dark frames (the teacher's second stream);
  gamma   DarkLight's gamma 1.8;
  static  msr frames, but every clip is its middle frame repeated: what a
          model can get from appearance alone (props, posture), without motion.

  python -m bench.synthetic_learnability --preset demo --steps 200   (from the repository root)
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from actlumos_jax.enhance import enhance
from actlumos_jax.models import build_model
from actlumos_jax.train import optim
from actlumos_jax.train.state import create_train_state, model_from_state
from actlumos_jax.train.steps import make_train_step
from actlumos_jax.train.stages import make_stage
from configs import kd_student
from data_pipelines import synthetic, transforms
from data_pipelines.datasets import read_arid10
from data_pipelines.sampling import clip_indices
from data_pipelines.video_io import decode_video


def load(root, subset: str, split: int, num_frames: int, stride: int, size: tuple[int, int]):
    """(N, T, H, W, 3) uint8 centred clips resized to ``size``, labels, clip mean lumas, lighting event types."""
    _, records = read_arid10(root, split=split, subset=subset, dataset_name="synthetic")
    clips, labels, lumas, events = [], [], [], []
    for r in records:
        frames = decode_video(r.path)
        frames = frames[clip_indices(len(frames), num_frames, stride)]
        clips.append(np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in frames]))
        labels.append(r.label)
        sidecar = json.loads((root / r.clip_id).with_suffix(".json").read_text())
        lumas.append(sidecar["mean_luma"])
        events.append(sidecar["illumination"]["type"])
    return np.stack(clips), np.array(labels), np.array(lumas), np.array(events)


def condition_inputs(clips: np.ndarray, condition: str) -> np.ndarray:
    """The uint8 clips a condition trains on: enhancement runs once here, not in every step."""
    if condition == "dark":
        return clips
    if condition == "autogain":
        gain = 0.45 * 255 / np.maximum(clips.mean(axis=(1, 2, 3, 4), keepdims=True), 1.0)
        return np.clip(np.round(clips * gain), 0, 255).astype(np.uint8)
    out = []
    for i in range(0, len(clips), 32):
        x = transforms.to_unit_range(jnp.asarray(clips[i:i + 32]), jnp.float32)
        x = enhance(x, "gamma" if condition == "gamma" else "msr")
        out.append(np.asarray(jnp.round(jnp.clip(x, 0, 1) * 255)).astype(np.uint8))
    out = np.concatenate(out)
    if condition == "static":
        out = np.repeat(out[:, out.shape[1] // 2][:, None], out.shape[1], axis=1)
    return out


def train_and_eval(condition, config, train, test, *, steps, batch_size, seed):
    """Trains with the library's own train step (the KD task with kd_weight 0: CE only)."""
    (x_train, y_train, _, _), (x_test, y_test, luma_test, event_test) = train, test
    x_train, x_test = condition_inputs(x_train, condition), condition_inputs(x_test, condition)
    task = make_stage(config)
    model = build_model(config.model, 11, kind="student", rngs=nnx.Rngs(seed, dropout=seed + 1, mask=seed + 2))
    tx, plateau_tx = optim.make_optimizer(config.optim, steps), optim.plateau_transform(config.optim)
    graphdef, state = create_train_state(model, tx, plateau_tx)
    lr_fn = lambda step, plateau: optim.current_learning_rate(config.optim, steps, step, plateau)
    train_step = jax.jit(make_train_step(graphdef, tx, task, lr_fn), donate_argnums=(0,))

    @jax.jit
    def predict(state, video):
        model = model_from_state(graphdef, state)
        model.eval()
        return task.logits(model, {"video": video}).argmax(-1)

    crop = config.data.crop
    height, width = x_train.shape[2:4]
    rng = np.random.default_rng(seed)
    start, losses = time.time(), []
    for step in range(steps):
        idx = rng.choice(len(x_train), batch_size, replace=False)
        top, left = rng.integers(0, height - crop + 1), rng.integers(0, width - crop + 1)
        x = x_train[idx, :, top:top + crop, left:left + crop]
        if rng.uniform() < 0.5:
            x = x[:, :, :, ::-1]
        batch = {"video": jnp.asarray(x), "label": jnp.asarray(y_train[idx])}
        state, metrics = train_step(state, batch, None)
        losses.append(float(metrics["loss"]))
        if (step + 1) % 50 == 0:
            print(f"  {condition} step {step + 1}/{steps} loss {np.mean(losses[-50:]):.3f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    top, left = (height - crop) // 2, (width - crop) // 2
    centre = x_test[:, :, top:top + crop, left:left + crop]
    pred = np.concatenate([np.asarray(predict(state, jnp.asarray(centre[i:i + 32])))
                           for i in range(0, len(centre), 32)])
    darkest = luma_test <= np.quantile(luma_test, 1 / 3)
    correct = pred == y_test
    confusion = np.zeros((11, 11), int)
    np.add.at(confusion, (y_test, pred), 1)
    steady = event_test == "steady"
    return {"condition": condition, "model_seed": seed, "top1": float(correct.mean()),
            "top1_darkest_third": float(correct[darkest].mean()),
            "top1_steady_light": float(correct[steady].mean()) if steady.any() else None,
            "top1_lighting_event": float(correct[~steady].mean()) if (~steady).any() else None,
            "train_seconds": round(time.time() - start, 1), "confusion": confusion.tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0, help="the dataset's generation seed")
    parser.add_argument("--root", default=None, help="dataset directory (default: the synthetic cache)")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--conditions", default="dark,autogain,msr,gamma,static")
    parser.add_argument("--first_model_seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1,
                        help="train each condition this many times (model seeds first..first+n-1) and report mean "
                             "and spread: one 200-step run varies by several points")
    args = parser.parse_args()

    config = kd_student.get_config("size=tiny")
    config.loss.kd_weight = 0.0  # plain cross-entropy: no teacher
    d = config.data
    root = synthetic.ensure_dataset(args.preset, args.seed, args.root)
    train = load(root, "train", args.split, d.num_frames, d.frame_stride, tuple(d.resize))
    test = load(root, "test", args.split, d.num_frames, d.frame_stride, tuple(d.resize))
    print(f"tiny student: {root}: {len(train[0])} train / {len(test[0])} test clips of {train[0].shape[1:]}; "
          f"test mean luma {test[2].mean():.3f} (darkest third <= {np.quantile(test[2], 1 / 3):.3f}); "
          f"chance {1 / 11:.3f}", flush=True)
    summary = []
    for condition in args.conditions.split(","):
        results = []
        for model_seed in range(args.first_model_seed, args.first_model_seed + args.repeats):
            results.append(train_and_eval(condition, config, train, test, steps=args.steps,
                                          batch_size=args.batch_size, seed=model_seed))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "confusion"}), flush=True)
        print("  confusion summed over repeats (rows true, cols predicted, order",
              ",".join(synthetic.CLASS_NAMES) + "):")
        for name, row in zip(synthetic.CLASS_NAMES, np.sum([r["confusion"] for r in results], axis=0)):
            print(f"  {name:>6} {' '.join(f'{v:2d}' for v in row)}")
        summary.append((condition, *([r[k] for r in results] for k in
                                     ("top1", "top1_darkest_third", "top1_steady_light", "top1_lighting_event"))))
    print(f"\nheld-out top-1 over {args.repeats} model seed(s), mean +- std (min..max); chance {100 / 11:.1f} %")
    for condition, top1, darkest, steady, event in summary:
        print(f"  {condition:>9}: all {_spread(top1)}   darkest third {_spread(darkest)}   "
              f"steady light {_spread(steady)}   lighting event {_spread(event)}")


def _spread(values) -> str:
    if None in values:
        return "n/a"
    v = 100 * np.asarray(values)
    return f"{v.mean():5.1f} +- {v.std():4.1f} ({v.min():.1f}..{v.max():.1f})"


if __name__ == "__main__":
    main()
