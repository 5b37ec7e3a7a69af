"""Forward (and training-step) time and parameter counts of the Student and Teacher.

    python -m bench.model_forward [--preset full|tiny] [--frames 64] [--size 112] [--batch 1]
                                  [--repeats 3] [--conv_impl both] [--train_step]

jit-compiled; compile time is reported apart. Prints one line per model and
convolution path: ``factored`` runs R(2+1)D's space-only and time-only kernels
as 2-D convolutions (`AxisFactoredConv`, the default), ``3d`` as XLA 3-D
convolutions (the same numbers); ``both`` prints their ratio, which is why
`AxisFactoredConv` exists (XLA's CPU backend has no fast 3-D convolution).

``--preset full`` is the paper's model in eval mode (64 x 112 x 112 clips by
default); ``tiny`` is the CPU demo's model, clip size and batch
(``configs/kd_student.py`` at size=tiny). ``--train_step`` also times the
gradient of the cross-entropy in training mode (BatchNorm on batch statistics,
dropout on): most of a training step.
"""

import argparse
import contextlib
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from actlumos_jax.models import build_model, default_model_config, inference_parameter_count
from actlumos_jax.models.r2plus1d import AxisFactoredConv


@contextlib.contextmanager
def conv_path(impl: str):
    """``3d``: every AxisFactoredConv takes nnx.Conv's own 3-D path while tracing."""
    factored_call = AxisFactoredConv.__call__
    if impl == "3d":
        AxisFactoredConv.__call__ = nnx.Conv.__call__
    try:
        yield
    finally:
        AxisFactoredConv.__call__ = factored_call


def _time(fn, args, repeats):
    """(compile seconds, seconds per call) of the jitted ``fn``."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = compiled(*args)
    jax.block_until_ready(out)
    return compile_s, (time.perf_counter() - start) / repeats


def time_forward(model, inputs, repeats):
    model.eval()
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, *x):
        return nnx.merge(graphdef, state)(*x).logits

    return _time(forward, (state, *inputs), repeats)


def time_train_step(model, inputs, labels, repeats):
    """The gradient of the mean cross-entropy, in training mode."""
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def gradient(params, rest, *x):
        def loss(p):
            logits = nnx.merge(graphdef, p, rest, copy=True)(*x).logits
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        return jax.grad(loss)(params)

    return _time(gradient, (params, rest, *inputs), repeats)


def model_config(preset: str, frames: int | None, size: int | None, batch: int | None):
    """(model config, frames, size, batch) of a preset; explicit values override it."""
    if preset == "tiny":
        from configs import kd_student  # pylint: disable=g-import-not-at-top  # run from the repository root

        c = kd_student.get_config("size=tiny")
        config, defaults = c.model, (c.data.num_frames, c.data.crop, c.train.batch_size)
    else:
        config, defaults = default_model_config(), (64, 112, 1)
    frames, size, batch = (v if v is not None else d for v, d in zip((frames, size, batch), defaults))
    config.num_frames = frames
    return config, frames, size, batch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="full", choices=("full", "tiny"))
    parser.add_argument("--frames", type=int, default=None, help="default: the preset's")
    parser.add_argument("--size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--batch", type=int, default=None, help="default: the preset's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--conv_impl", default="both", choices=("factored", "3d", "both"))
    parser.add_argument("--train_step", action="store_true", help="also time the training gradient")
    args = parser.parse_args()
    config, frames, size, batch = model_config(args.preset, args.frames, args.size, args.batch)
    config.dtype = args.dtype
    clip = jnp.asarray(jax.random.normal(jax.random.key(0), (batch, frames, size, size, 3)))
    labels = jnp.arange(batch) % 11
    print(f"device: {jax.devices()[0].device_kind}; {args.preset} model; clip {batch}x{frames}x{size}x{size}x3, "
          f"{args.dtype}")
    impls = ("factored", "3d") if args.conv_impl == "both" else (args.conv_impl,)
    for kind in ("student", "teacher"):
        model = build_model(config, 11, kind=kind, rngs=nnx.Rngs(0, dropout=1, mask=2))
        inputs = (clip,) if kind == "student" else (clip, clip)
        timings = {"forward": {}, "train step": {}}
        for impl in impls:
            with conv_path(impl):
                compile_s, timings["forward"][impl] = time_forward(model, inputs, args.repeats)
                line = (f"{kind:8s} {impl:8s} params {inference_parameter_count(model) / 1e6:.3f} M  "
                        f"compile {compile_s:.1f} s  forward {timings['forward'][impl]:.3f} s per batch of {batch}")
                if args.train_step:
                    compile_s, timings["train step"][impl] = time_train_step(model, inputs, labels, args.repeats)
                    line += f"  train step {timings['train step'][impl]:.3f} s (compile {compile_s:.1f} s)"
            print(line, flush=True)
        for what, per_call in timings.items():
            if len(per_call) == 2:
                print(f"{kind:8s} 3d / factored {what} time: {per_call['3d'] / per_call['factored']:.2f}x")


if __name__ == "__main__":
    main()
