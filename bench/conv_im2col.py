"""A 3x3 spatial convolution three ways on XLA:CPU, at the student's layer 2-4 shapes (batch 2, 16 frames).

    python -m bench.conv_im2col [--repeats 9]

``xla conv``: what ``AxisFactoredConv`` runs now (XLA's 2-D convolution, YNNPACK on CPU);
``im2col dot``: the nine shifted windows side by side, then one matrix product; ``9 tap dots``: one
product per kernel tap, summed. Median milliseconds of the forward; the largest difference from the
XLA convolution is printed to show they compute the same thing. It tells whether layers 3-4, where
``python -m bench.vs_torch --layers`` finds XLA 2-3.8x slower than torch, would gain from im2col.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from actlumos_jax.models.r2plus1d import _lax_conv2d

# (frames x height x width after the batch is folded in, in channels, out channels): the stride-1
# spatial convolutions of layers 2, 3 and 4 of R(2+1)D-34 at 2 x 16 x 112 x 112 clips.
SHAPES = ((16, 28, 28, 128, 288), (8, 14, 14, 256, 576), (4, 7, 7, 512, 1152))


def im2col(x, kernel):
    batch, height, width, c_in = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)], axis=-1)
    return (cols.reshape(-1, 9 * c_in) @ kernel.reshape(9 * c_in, -1)).reshape(batch, height, width, -1)


def tap_dots(x, kernel):
    batch, height, width, c_in = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = sum(padded[:, i:i + height, j:j + width].reshape(-1, c_in) @ kernel[i, j]
              for i in range(3) for j in range(3))
    return out.reshape(batch, height, width, -1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ways = {"xla conv": lambda x, k: _lax_conv2d(x, k, (1, 1), ((1, 1), (1, 1)), None),
            "im2col dot": im2col, "9 tap dots": tap_dots}
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; median ms over {args.repeats}")
    for frames, height, width, c_in, c_out in SHAPES:
        x = jnp.asarray(rng.standard_normal((frames, height, width, c_in)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)) * 0.01, jnp.float32)
        reference = None
        for name, fn in ways.items():
            f = jax.jit(fn)
            out = jax.block_until_ready(f(x, kernel))
            reference = out if reference is None else reference
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                jax.block_until_ready(f(x, kernel))
                times.append(time.perf_counter() - start)
            print(f"{frames}x{height}x{width} {c_in:4d}->{c_out:4d}  {name:11s} {np.median(times) * 1e3:8.2f} ms"
                  f"  max |diff| {float(jnp.abs(out - reference).max()):.1e}", flush=True)


if __name__ == "__main__":
    main()
