"""Forward-pass time and parameter counts of the full-size Student and Teacher.

    python bench/model_forward.py [--frames 64] [--size 112] [--batch 1] [--repeats 3] [--conv_impl both]

Eval mode, jit-compiled; compile time is reported apart. Prints one line per
model and convolution path: ``factored`` runs R(2+1)D's space-only and
time-only kernels as 2-D convolutions (`AxisFactoredConv`, the default),
``3d`` as XLA 3-D convolutions (the same numbers); ``both`` prints their ratio.
"""

import argparse
import contextlib
import time

import jax
import jax.numpy as jnp
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


def time_forward(model, inputs, repeats):
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, *x):
        return nnx.merge(graphdef, state)(*x).logits

    start = time.perf_counter()
    compiled = forward.lower(state, *inputs).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(state, *inputs))
    start = time.perf_counter()
    for _ in range(repeats):
        out = compiled(state, *inputs)
    jax.block_until_ready(out)
    return compile_s, (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--conv_impl", default="both", choices=("factored", "3d", "both"))
    args = parser.parse_args()
    config = default_model_config()
    config.num_frames, config.dtype = args.frames, args.dtype
    clip = jnp.asarray(jax.random.normal(jax.random.key(0), (args.batch, args.frames, args.size, args.size, 3)))
    print(f"device: {jax.devices()[0].device_kind}; clip {args.batch}x{args.frames}x{args.size}x{args.size}x3, {args.dtype}")
    impls = ("factored", "3d") if args.conv_impl == "both" else (args.conv_impl,)
    for kind in ("student", "teacher"):
        model = build_model(config, 11, kind=kind, rngs=nnx.Rngs(0))
        model.eval()
        inputs = (clip,) if kind == "student" else (clip, clip)
        per_call = {}
        for impl in impls:
            with conv_path(impl):
                compile_s, per_call[impl] = time_forward(model, inputs, args.repeats)
            print(f"{kind:8s} {impl:8s} params {inference_parameter_count(model) / 1e6:.3f} M  compile {compile_s:.1f} s  "
                  f"forward {per_call[impl]:.2f} s per batch of {args.batch} ({per_call[impl] / args.batch:.2f} s/clip)")
        if len(per_call) == 2:
            print(f"{kind:8s} 3d / factored forward time: {per_call['3d'] / per_call['factored']:.2f}x")


if __name__ == "__main__":
    main()
