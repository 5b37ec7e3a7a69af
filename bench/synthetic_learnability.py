"""Is the synthetic dataset learnable, and not trivially? A small video model on CPU.

Trains a small model from scratch on split 1 of a synthetic preset (read with
the real ARID reader), at low resolution (16 frames, 48 x 64), and
reports held-out top-1 overall and on the darkest third of the test clips (by
the sidecar's mean luma), for:
  dark    the frames as stored;
  gamma   DarkLight's gamma 1.8 enhancement (``actlumos_jax.enhance``);
  static  gamma frames, but every clip is its middle frame repeated: what a
          model can get from appearance alone (props, posture), without motion.

The default model (``frames``) is a per-frame 2-D CNN to a 2 x 3 grid of
features followed by two temporal convolutions: it sees where the figure is in
every frame and how that changes. ``--model r2plus1d`` trains
``R2Plus1D(depth=10, torchvision, width=0.25)`` instead; XLA's CPU 3-D
convolutions make that ~18 s a step of 8 clips on a shared 2-core machine.

  python bench/synthetic_learnability.py --preset demo --epochs 20
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from actlumos_jax.enhance import gamma_correction
from actlumos_jax.models.r2plus1d import R2Plus1D, R2Plus1DSpec
from data_pipelines import synthetic
from data_pipelines.datasets import read_arid10
from data_pipelines.video_io import decode_video

MEAN = np.array([0.43216, 0.394666, 0.37645], np.float32)
STD = np.array([0.22803, 0.22145, 0.216989], np.float32)


class FrameTemporalNet(nnx.Module):
    """Per-frame conv features on a coarse grid, then temporal convolutions."""

    def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
        widths = (6, 16, 32, 64, 64)
        self.convs = nnx.List([nnx.Conv(i, o, (3, 3), strides=2, rngs=rngs) for i, o in zip(widths, widths[1:])])
        self.norms = nnx.List([nnx.BatchNorm(o, rngs=rngs) for o in widths[1:]])
        self.temporal1 = nnx.Conv(64 * 6, 128, (3,), rngs=rngs)
        self.temporal2 = nnx.Conv(128, 128, (3,), rngs=rngs)
        self.head = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x):
        b, t, h, w, c = x.shape
        y = x.reshape(b * t, h, w, c)
        for conv, norm in zip(self.convs, self.norms):
            y = jax.nn.relu(norm(conv(y)))
        y = jax.image.resize(y, (b * t, 2, 3, y.shape[-1]), "linear").reshape(b, t, -1)
        y = jax.nn.relu(self.temporal2(jax.nn.relu(self.temporal1(y))))
        return self.head(y.mean(1))


def load(root, subset: str, split: int, num_frames: int, size=(48, 64)):
    """(N, T, H, W, 3) float16 frames in [0, 1], labels, clip mean lumas."""
    _, records = read_arid10(root, split=split, subset=subset, dataset_name="synthetic")
    clips, labels, lumas = [], [], []
    for r in records:
        frames = decode_video(r.path).astype(np.float32) / 255
        frames = frames[np.linspace(0, len(frames) - 1, num_frames).round().astype(int)]
        frames = jax.image.resize(frames, (num_frames, *size, 3), "linear", antialias=True)
        clips.append(np.asarray(frames, np.float16))
        labels.append(r.label)
        lumas.append(json.loads((root / r.clip_id).with_suffix(".json").read_text())["mean_luma"])
    return np.stack(clips), np.array(labels), np.array(lumas)


def prepare(x: np.ndarray, condition: str) -> jax.Array:
    """Normalised frames plus their deviation from the clip's mean frame (6 channels).

    The second half is where things move; without it a model this small
    memorises rooms and actors instead of actions.
    """
    x = jnp.asarray(x, jnp.float32)
    if condition in ("gamma", "static"):
        x = gamma_correction(x, 1.8)
    if condition == "static":
        x = jnp.repeat(x[:, x.shape[1] // 2][:, None], x.shape[1], axis=1)
    x = (x - MEAN) / STD
    return jnp.concatenate([x, (x - x.mean(axis=1, keepdims=True)) * 4], axis=-1)


def train_and_eval(condition, train, test, *, model_name, epochs, batch_size, lr, seed):
    (x_train, y_train, _), (x_test, y_test, luma_test) = train, test
    if model_name == "r2plus1d":
        model = R2Plus1D(R2Plus1DSpec(depth=10, variant="torchvision", width=0.25, num_classes=11), rngs=nnx.Rngs(seed))
        model.stem.spatial = nnx.Conv(6, model.stem.spatial.out_features, kernel_size=(1, 7, 7), strides=(1, 2, 2),
                                      padding=((0, 0), (3, 3), (3, 3)), use_bias=False, rngs=nnx.Rngs(seed))
    else:
        model = FrameTemporalNet(11, rngs=nnx.Rngs(seed))
    graphdef, params, stats = nnx.split(model, nnx.Param, ...)
    steps_per_epoch = len(x_train) // batch_size
    tx = optax.adam(optax.cosine_decay_schedule(lr, epochs * steps_per_epoch))
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, stats, opt_state, x, y):
        def loss_fn(params):
            m = nnx.merge(graphdef, params, stats, copy=True)
            m.train()
            loss = optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
            return loss, nnx.split(m, nnx.Param, ...)[2]
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    @jax.jit
    def predict(params, stats, x):
        m = nnx.merge(graphdef, params, stats, copy=True)
        m.eval()
        return m(x).argmax(-1)

    rng = np.random.default_rng(seed)
    start = time.time()
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * batch_size:(s + 1) * batch_size]
            x = prepare(x_train[idx], condition)
            if rng.uniform() < 0.5:
                x = x[:, :, :, ::-1]
            params, stats, opt_state, loss = train_step(params, stats, opt_state, x, jnp.asarray(y_train[idx]))
            losses.append(float(loss))
        print(f"  {condition} epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f} ({time.time() - start:.0f} s)",
              flush=True)
    pred = np.concatenate([np.asarray(predict(params, stats, prepare(x_test[i:i + 32], condition)))
                           for i in range(0, len(x_test), 32)])
    darkest = luma_test <= np.quantile(luma_test, 1 / 3)
    correct = pred == y_test
    confusion = np.zeros((11, 11), int)
    np.add.at(confusion, (y_test, pred), 1)
    return {"condition": condition, "top1": float(correct.mean()), "top1_darkest_third": float(correct[darkest].mean()),
            "train_seconds": round(time.time() - start, 1), "confusion": confusion.tolist()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="dataset directory (default: the synthetic cache)")
    parser.add_argument("--split", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--model", default="frames", choices=("frames", "r2plus1d"))
    parser.add_argument("--conditions", default="dark,gamma,static")
    args = parser.parse_args()

    root = synthetic.ensure_dataset(args.preset, args.seed, args.root)
    train = load(root, "train", args.split, args.frames)
    test = load(root, "test", args.split, args.frames)
    print(f"{args.model}: {root}: {len(train[0])} train / {len(test[0])} test clips of {train[0].shape[1:]}; "
          f"test mean luma {test[2].mean():.3f} (darkest third <= {np.quantile(test[2], 1 / 3):.3f}); "
          f"chance {1 / 11:.3f}", flush=True)
    for condition in args.conditions.split(","):
        result = train_and_eval(condition, train, test, model_name=args.model, epochs=args.epochs, batch_size=args.batch_size,
                                lr=args.lr, seed=args.seed)
        print(json.dumps({k: v for k, v in result.items() if k != "confusion"}), flush=True)
        print("  confusion (rows true, cols predicted, order", ",".join(synthetic.CLASS_NAMES) + "):")
        for name, row in zip(synthetic.CLASS_NAMES, result["confusion"]):
            print(f"  {name:>6} {' '.join(f'{v:2d}' for v in row)}")


if __name__ == "__main__":
    main()
