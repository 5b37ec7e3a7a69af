"""Train-mode BatchNorm + ReLU, forward and backward, JAX against torch at one of the student's shapes.

    python -m bench.batchnorm_vs_torch [--channels 144] [--shape 2,16,56,56] [--repeats 7]

JAX: ``nnx.BatchNorm`` (channels last) and three rewrites of its statistics (a two-pass variance,
sums as matrix-vector products, a two-stage sum); torch: ``BatchNorm3d`` (channels first, as
torchvision runs it), on the same numbers. Median milliseconds over the repeats. It answers whether
BatchNorm is where the JAX training step loses to torch (``python -m bench.vs_torch --profile``).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

EPS = 1e-3  # the IG-65M variant's


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def two_pass(scale, bias, x):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.mean(jnp.square(x - mean), axes)
    return jax.nn.relu((x - mean) * (scale * jax.lax.rsqrt(var + EPS)) + bias)


def matvec_sums(scale, bias, x):
    rows = x.reshape(-1, x.shape[-1])
    ones = jnp.ones((rows.shape[0],), x.dtype)
    mean = ones @ rows / rows.shape[0]
    var = ones @ (rows * rows) / rows.shape[0] - mean * mean
    return jax.nn.relu((x - mean) * (scale * jax.lax.rsqrt(var + EPS)) + bias)


def two_stage_sums(scale, bias, x):
    blocks = x.reshape(-1, 64, x.shape[-1])
    count = blocks.shape[0] * blocks.shape[1]
    mean = blocks.sum(0).sum(0) / count
    var = (blocks * blocks).sum(0).sum(0) / count - mean * mean
    return jax.nn.relu((x - mean) * (scale * jax.lax.rsqrt(var + EPS)) + bias)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=144, help="144: layer 1's mid-plane count")
    parser.add_argument("--shape", default="2,16,56,56", help="N,T,H,W")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    shape = (*map(int, args.shape.split(",")), args.channels)
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)
    xj, gj = jnp.asarray(x), jnp.asarray(g)

    def timed_vjp(fn, params):
        step = jax.jit(lambda p, x, g: jax.vjp(fn, p, x)[1](g))
        forward = jax.jit(fn)
        return (_median_ms(lambda: jax.block_until_ready(forward(params, xj)), args.repeats),
                _median_ms(lambda: jax.block_until_ready(step(params, xj, gj)), args.repeats))

    bn = nnx.BatchNorm(args.channels, momentum=0.1, epsilon=EPS, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(bn)
    rows = {"nnx.BatchNorm": timed_vjp(lambda s, x: jax.nn.relu(nnx.merge(graphdef, s)(x)), state)}
    params = (jnp.ones(args.channels), jnp.zeros(args.channels))
    for name, fn in (("two-pass variance", two_pass), ("sums as mat-vec", matvec_sums),
                     ("two-stage sums", two_stage_sums)):
        rows[name] = timed_vjp(lambda p, x, fn=fn: fn(p[0], p[1], x), params)

    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))).requires_grad_(True)
    gt = torch.from_numpy(np.ascontiguousarray(g.transpose(0, 4, 1, 2, 3)))
    tbn = torch.nn.BatchNorm3d(args.channels, eps=EPS, momentum=0.9)
    with torch.no_grad():
        torch_forward = _median_ms(lambda: torch.relu(tbn(xt)), args.repeats)
    rows["torch BatchNorm3d"] = (torch_forward, _median_ms(lambda: torch.relu(tbn(xt)).backward(gt), args.repeats))

    print(f"train-mode BatchNorm + ReLU on {shape} float32; jax {jax.__version__}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}; median ms over {args.repeats}")
    print(f"{'':24s} {'forward':>10s} {'fwd + bwd':>10s}")
    for name, (forward, both) in rows.items():
        print(f"{name:24s} {forward:10.1f} {both:10.1f}")


if __name__ == "__main__":
    main()
