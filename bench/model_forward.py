"""Forward-pass time and parameter counts of the full-size Student and Teacher.

    python bench/model_forward.py [--frames 64] [--size 112] [--batch 1] [--repeats 3]

Eval mode, float32, jit-compiled; compile time is reported apart. Prints one
line per model.
"""

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from actlumos_jax.models import build_model, default_model_config, inference_parameter_count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    config = default_model_config()
    config.num_frames, config.dtype = args.frames, args.dtype
    clip = jnp.asarray(jax.random.normal(jax.random.key(0), (args.batch, args.frames, args.size, args.size, 3)))
    print(f"device: {jax.devices()[0].device_kind}; clip {args.batch}x{args.frames}x{args.size}x{args.size}x3, {args.dtype}")
    for kind in ("student", "teacher"):
        model = build_model(config, 11, kind=kind, rngs=nnx.Rngs(0))
        model.eval()
        graphdef, state = nnx.split(model)
        inputs = (clip,) if kind == "student" else (clip, clip)

        @jax.jit
        def forward(state, *x):
            return nnx.merge(graphdef, state)(*x).logits

        start = time.perf_counter()
        compiled = forward.lower(state, *inputs).compile()
        compile_s = time.perf_counter() - start
        jax.block_until_ready(compiled(state, *inputs))
        start = time.perf_counter()
        for _ in range(args.repeats):
            out = compiled(state, *inputs)
        jax.block_until_ready(out)
        per_call = (time.perf_counter() - start) / args.repeats
        print(f"{kind:8s} params {inference_parameter_count(model) / 1e6:.3f} M  compile {compile_s:.1f} s  "
              f"forward {per_call:.2f} s per batch of {args.batch} ({per_call / args.batch:.2f} s/clip)")


if __name__ == "__main__":
    main()
