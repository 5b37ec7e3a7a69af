"""The student against torchvision's R(2+1)D-34 on this machine: forward and training step, one process.

    python -m bench.vs_torch [--small] [--repeats 5] [--batch 2] [--frames 16] [--size 112]

Both sides get the same float32 clip (batch 2, 16 x 112 x 112 by default) and
the same step: eval-mode forward, and a training step (train mode: BatchNorm
on batch statistics, dropout on; cross-entropy; AdamW update). The JAX side is
the full student (R(2+1)D-34 IG-65M + the temporal encoder + head), jitted;
the torch side is torchvision's VideoResNet built the IG-65M way
(tests/torch_reference.py; bench/torch_r2plus1d.py when torchvision is
missing), eager, with torch's default threads. The two sides alternate, one
call each per round, so a change of background load hits both; every figure
is the median with min-max over the rounds, and each ratio is JAX / torch
(below 1: JAX is faster) taken per round. Compile time (JAX's lower + compile,
torch's first call) is reported apart.

``--small`` runs the CPU demo's model (R(2+1)D-10 at 1/8 width, 2 x 8 x 32 x 32
clips) against the same network in torch.nn: a check in seconds.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

from actlumos_jax import losses
from actlumos_jax.models import build_model, parameter_count
from bench import gpu_bench
from bench.torch_r2plus1d import DEPTHS, R2Plus1D

NUM_CLASSES = 11


def torch_model(small: bool) -> tuple[torch.nn.Module, str]:
    if small:
        t = gpu_bench.TINY_MODEL
        return R2Plus1D(NUM_CLASSES, DEPTHS[t["depth"]], t["width"]), "R(2+1)D-10 at 1/8 width (torch.nn)"
    try:
        from tests.torch_reference import ig65m_r2plus1d_34  # pylint: disable=g-import-not-at-top
        return ig65m_r2plus1d_34(NUM_CLASSES), "torchvision VideoResNet R(2+1)D-34 IG-65M"
    except ImportError:
        return R2Plus1D(NUM_CLASSES), "R(2+1)D-34 IG-65M in torch.nn (torchvision missing)"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _spread(values) -> str:
    v = np.asarray(values)
    return f"{np.median(v):.3f} [{v.min():.3f}-{v.max():.3f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the demo's tiny model and clips: a quick check")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (each: one JAX and one torch call)")
    parser.add_argument("--batch", type=int, default=None, help="default 2")
    parser.add_argument("--frames", type=int, default=None, help="default 16 (--small: 8)")
    parser.add_argument("--size", type=int, default=None, help="default 112 (--small: 32)")
    args = parser.parse_args(argv)
    args.batch = args.batch or 2
    args.frames = args.frames or (8 if args.small else 16)
    args.size = args.size or (32 if args.small else 112)
    args.dry_run = args.small  # gpu_bench's model config: the tiny model

    config = gpu_bench._model_config(args, "float32")  # pylint: disable=protected-access
    student = build_model(config, NUM_CLASSES, kind="student", rngs=nnx.Rngs(0, dropout=1, mask=2))
    tmodel, tname = torch_model(args.small)
    rng = np.random.default_rng(0)
    clip = rng.standard_normal((args.batch, args.frames, args.size, args.size, 3), dtype=np.float32)
    labels = np.arange(args.batch) % NUM_CLASSES
    print(f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
          f"torch threads {torch.get_num_threads()}; jax {jax.__version__}, torch {torch.__version__}")
    print(f"clip {args.batch} x {args.frames} x {args.size} x {args.size} x 3 float32; "
          f"JAX student {parameter_count(student) / 1e6:.2f} M params; "
          f"torch {tname} {sum(p.numel() for p in tmodel.parameters()) / 1e6:.2f} M params")

    # ---- JAX: eval forward and the training step, compiled apart
    student.eval()
    graphdef_eval, state_eval = nnx.split(student)

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef_eval, state)(x).logits

    x_jax, y_jax = jnp.asarray(clip), jnp.asarray(labels)
    fwd, fwd_compile, _ = gpu_bench._compile(forward, state_eval, x_jax)  # pylint: disable=protected-access
    student.train()
    graphdef, tx, train_state = gpu_bench._train_state(student)  # pylint: disable=protected-access
    train_state = jax.tree.map(jnp.copy, train_state)  # donated by the step: not the forward's buffers
    step = gpu_bench._make_step(graphdef, tx, lambda model, x, y: losses.cross_entropy(model(x).logits, y))  # pylint: disable=protected-access
    step, step_compile, _ = gpu_bench._compile(step, train_state, x_jax, y_jax)  # pylint: disable=protected-access

    def jax_forward():
        jax.block_until_ready(fwd(state_eval, x_jax))

    def jax_step():
        nonlocal train_state
        train_state, loss = step(train_state, x_jax, y_jax)
        jax.block_until_ready(loss)

    # ---- torch: the same two calls, eager
    x_torch = torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3)))
    y_torch = torch.from_numpy(labels)
    optimizer = torch.optim.AdamW(tmodel.parameters(), lr=1e-5, weight_decay=1e-3)

    def torch_forward():
        tmodel.eval()
        with torch.inference_mode():
            tmodel(x_torch)

    def torch_step():
        tmodel.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(tmodel(x_torch), y_torch).backward()
        optimizer.step()

    first = {"jax forward": _timed(jax_forward), "torch forward": _timed(torch_forward),
             "jax step": _timed(jax_step), "torch step": _timed(torch_step)}
    print(f"compile: JAX forward {fwd_compile:.1f} s, JAX training step {step_compile:.1f} s; first call after it: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in first.items()))

    times = {k: [] for k in ("jax forward", "torch forward", "jax step", "torch step")}
    for _ in range(args.repeats):
        times["jax forward"].append(_timed(jax_forward))
        times["torch forward"].append(_timed(torch_forward))
    for _ in range(args.repeats):
        times["jax step"].append(_timed(jax_step))
        times["torch step"].append(_timed(torch_step))
    print(f"{'seconds per call, median [min-max] over ' + str(args.repeats) + ' rounds':52s} {'torch':>22s} "
          f"{'JAX':>22s} {'JAX / torch':>22s}")
    for what, label in (("forward", "forward, eval mode"), ("step", "one training step (AdamW)")):
        j, t = np.asarray(times[f"jax {what}"]), np.asarray(times[f"torch {what}"])
        print(f"{label:52s} {_spread(t):>22s} {_spread(j):>22s} {_spread(j / t) + 'x':>22s}")


if __name__ == "__main__":
    main()
