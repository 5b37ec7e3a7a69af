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

``--layers`` times each distinct convolution of the student's backbone apart,
at the shapes it sees: forward, input gradient and kernel gradient, JAX (the
model's own ``AxisFactoredConv``) against torch's ``conv3d`` and
``convolution_backward``, with its count in the network and its share of the
total. It shows where the training step's time goes.

``--profile DIR`` traces two JAX training steps with XLA's per-operation
annotations (it sets ``--xla_cpu_enable_xprof_traceme``), writes the trace
under DIR and prints the step's time summed by operation kind: convolutions
(``ynn_fusion`` on XLA:CPU's YNNPACK path), matrix products, the copies that
slice windows, and the element-wise fusions of BatchNorm and ReLU.

``--teacher`` times the teacher's two-stream shape: the JAX teacher (both
streams through the one shared backbone, DFF, encoder, head) against torch's
backbone on both streams as one batch of 2 x batch clips.

``--small`` runs the CPU demo's model (R(2+1)D-10 at 1/8 width, 2 x 8 x 32 x 32
clips) against the same network in torch.nn: a check in seconds.
"""

from __future__ import annotations

import argparse
import os
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
from actlumos_jax.models.r2plus1d import AxisFactoredConv
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


def _conv_key(conv: AxisFactoredConv) -> tuple:
    return conv.kernel_size, conv.strides, conv.padding, conv.in_features, conv.out_features


def conv_layers(model, clip_shape) -> list[tuple[AxisFactoredConv, tuple[int, ...], int]]:
    """Every distinct (convolution, input shape) of ``model.backbone`` on clips of ``clip_shape``, with its count."""
    seen: dict = {}
    call = AxisFactoredConv.__call__

    def recording(conv, x):
        key = (_conv_key(conv), x.shape)
        seen[key] = seen.get(key, 0) + 1
        return call(conv, x)

    AxisFactoredConv.__call__ = recording
    try:
        graphdef, state = nnx.split(model)  # merged inside the trace: a train-mode BatchNorm may update there
        jax.eval_shape(lambda state, x: nnx.merge(graphdef, state).backbone.features(x), state,
                       jax.ShapeDtypeStruct(clip_shape, jnp.float32))
    finally:
        AxisFactoredConv.__call__ = call
    convs = {_conv_key(m): m for _, m in nnx.iter_graph(model.backbone) if isinstance(m, AxisFactoredConv)}
    return [(convs[key], shape, count) for (key, shape), count in seen.items()]


def _layer_times(conv: AxisFactoredConv, shape, repeats: int, rng) -> dict[str, list[float]]:
    """Forward, input and kernel gradient of one convolution, JAX and torch alternating per round."""
    x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    graphdef, state = nnx.split(conv)
    (kernel,), treedef = jax.tree.flatten(state)  # its one leaf: a bias-free convolution

    def apply(x, kernel):
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, [kernel]))(x)

    g = jnp.asarray(rng.standard_normal(jax.eval_shape(apply, x, kernel).shape, dtype=np.float32))
    jax_calls = {
        "forward": jax.jit(apply),
        "input grad": jax.jit(lambda x, k, g: jax.vjp(lambda x: apply(x, k), x)[1](g)[0]),
        "kernel grad": jax.jit(lambda x, k, g: jax.vjp(lambda k: apply(x, k), k)[1](g)[0]),
    }
    x_t = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 4, 1, 2, 3)))
    g_t = torch.from_numpy(np.ascontiguousarray(np.asarray(g).transpose(0, 4, 1, 2, 3)))
    w_t = torch.from_numpy(np.ascontiguousarray(np.asarray(kernel).transpose(4, 3, 0, 1, 2)))
    stride, padding = tuple(conv.strides), tuple(p for p, _ in conv.padding)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(g_t, x_t, w_t, None, stride, padding, (1, 1, 1), False,
                                                           (0, 0, 0), 1, mask)

    torch_calls = {"forward": lambda: F.conv3d(x_t, w_t, stride=stride, padding=padding),
                   "input grad": backward((True, False, False)), "kernel grad": backward((False, True, False))}
    times = {}
    with torch.no_grad():
        for what in jax_calls:
            jax.block_until_ready(jax_calls[what](x, kernel) if what == "forward" else jax_calls[what](x, kernel, g))
            torch_calls[what]()
            args = (x, kernel) if what == "forward" else (x, kernel, g)
            for _ in range(repeats):
                times.setdefault(f"jax {what}", []).append(_timed(lambda: jax.block_until_ready(jax_calls[what](*args))))
                times.setdefault(f"torch {what}", []).append(_timed(torch_calls[what]))
    return times


def layers_report(model, clip_shape, repeats: int) -> None:
    """Prints, per distinct convolution, median seconds of JAX and torch and their ratio, then the totals."""
    rng = np.random.default_rng(1)
    rows, totals = [], {}
    for conv, shape, count in conv_layers(model, clip_shape):
        times = _layer_times(conv, shape, repeats, rng)
        medians = {k: float(np.median(v)) for k, v in times.items()}
        for k, v in medians.items():
            totals[k] = totals.get(k, 0.0) + count * v
        name = f"{'x'.join(map(str, conv.kernel_size))}/{'x'.join(map(str, conv.strides))} " \
               f"{conv.in_features}->{conv.out_features} on {'x'.join(map(str, shape[1:4]))}"
        rows.append((name, count, medians))
    whats = ("forward", "input grad", "kernel grad")
    print(f"{'convolution (kernel/stride, channels, input T x H x W)':44s} {'n':>2s} " +
          " ".join(f"{w + ' jax/torch (ms)':>26s}" for w in whats))
    for name, count, m in rows:
        cells = [f"{1e3 * m['jax ' + w]:7.1f}/{1e3 * m['torch ' + w]:7.1f} {m['jax ' + w] / m['torch ' + w]:5.2f}x"
                 for w in whats]
        print(f"{name:44s} {count:2d} " + " ".join(f"{c:>26s}" for c in cells))
    cells = [f"{totals['jax ' + w]:7.2f}/{totals['torch ' + w]:7.2f}s {totals['jax ' + w] / totals['torch ' + w]:4.2f}x"
             for w in whats]
    print(f"{'all convolutions, each times its count':44s} {'':2s} " + " ".join(f"{c:>26s}" for c in cells))


def profile_by_kind(step, train_state, x, y, trace_dir: str, steps: int = 2) -> None:
    """Traces ``steps`` calls of the compiled step and prints milliseconds per step by HLO kind."""
    import collections  # pylint: disable=g-import-not-at-top
    import gzip  # pylint: disable=g-import-not-at-top
    import json  # pylint: disable=g-import-not-at-top
    import pathlib  # pylint: disable=g-import-not-at-top
    import re  # pylint: disable=g-import-not-at-top

    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for _ in range(steps):
        train_state, loss = step(train_state, x, y)
        jax.block_until_ready(loss)
    jax.profiler.stop_trace()
    trace = max(pathlib.Path(trace_dir).rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        op = e.get("args", {}).get("hlo_op")
        if e.get("ph") == "X" and "dur" in e and op:
            kind = re.sub(r"\.\d+$", "", op)
            total[kind] += e["dur"] / steps
            count[kind] += 1 / steps
    print(f"JAX training step by operation kind (trace: {trace}); ms per step, calls per step")
    for kind, us in total.most_common(15):
        print(f"  {us / 1e3:9.1f} ms  {count[kind]:5.0f}  {kind}")
    print(f"  {sum(total.values()) / 1e3:9.1f} ms  {sum(count.values()):5.0f}  all operations (they may overlap)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the demo's tiny model and clips: a quick check")
    parser.add_argument("--layers", action="store_true", help="time each distinct convolution apart (see above)")
    parser.add_argument("--profile", metavar="DIR", help="trace the JAX training step and sum it by operation kind")
    parser.add_argument("--teacher", action="store_true",
                        help="the teacher's two-stream shape: JAX's teacher (dark + retinex through the shared "
                        "backbone, DFF, encoder) against torch's backbone on both streams as one batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (each: one JAX and one torch call)")
    parser.add_argument("--batch", type=int, default=None, help="default 2")
    parser.add_argument("--frames", type=int, default=None, help="default 16 (--small: 8)")
    parser.add_argument("--size", type=int, default=None, help="default 112 (--small: 32)")
    args = parser.parse_args(argv)
    if args.profile:  # read when the CPU backend starts, which is at the first JAX call below
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
    args.batch = args.batch or 2
    args.frames = args.frames or (8 if args.small else 16)
    args.size = args.size or (32 if args.small else 112)
    args.dry_run = args.small  # gpu_bench's model config: the tiny model

    config = gpu_bench._model_config(args, "float32")  # pylint: disable=protected-access
    kind = "teacher" if args.teacher else "student"
    student = build_model(config, NUM_CLASSES, kind=kind, rngs=nnx.Rngs(0, dropout=1, mask=2))
    tmodel, tname = torch_model(args.small)
    rng = np.random.default_rng(0)
    # The teacher's two streams (dark, retinex): their values do not change the time.
    clips = [rng.standard_normal((args.batch, args.frames, args.size, args.size, 3), dtype=np.float32)
             for _ in range(2 if args.teacher else 1)]
    labels = np.arange(args.batch) % NUM_CLASSES
    print(f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
          f"torch threads {torch.get_num_threads()}; jax {jax.__version__}, torch {torch.__version__}")
    print(f"{len(clips)} stream(s) of {args.batch} x {args.frames} x {args.size} x {args.size} x 3 float32; "
          f"JAX {kind} {parameter_count(student) / 1e6:.2f} M params; "
          f"torch {tname} {sum(p.numel() for p in tmodel.parameters()) / 1e6:.2f} M params"
          + (", both streams as one batch, logits averaged over them" if args.teacher else ""))

    if args.layers:
        layers_report(student, (len(clips) * args.batch, *clips[0].shape[1:]), args.repeats)
        return

    # ---- JAX: eval forward and the training step, compiled apart
    student.eval()
    graphdef_eval, state_eval = nnx.split(student)

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef_eval, state)(*x).logits

    x_jax, y_jax = tuple(jnp.asarray(c) for c in clips), jnp.asarray(labels)
    fwd, fwd_compile, _ = gpu_bench._compile(forward, state_eval, x_jax)  # pylint: disable=protected-access
    student.train()
    graphdef, tx, train_state = gpu_bench._train_state(student)  # pylint: disable=protected-access
    train_state = jax.tree.map(jnp.copy, train_state)  # donated by the step: not the forward's buffers
    step = gpu_bench._make_step(graphdef, tx, lambda model, x, y: losses.cross_entropy(model(*x).logits, y))  # pylint: disable=protected-access
    step, step_compile, _ = gpu_bench._compile(step, train_state, x_jax, y_jax)  # pylint: disable=protected-access

    if args.profile:
        profile_by_kind(step, train_state, x_jax, y_jax, args.profile)
        return

    def jax_forward():
        jax.block_until_ready(fwd(state_eval, x_jax))

    def jax_step():
        nonlocal train_state
        train_state, loss = step(train_state, x_jax, y_jax)
        jax.block_until_ready(loss)

    # ---- torch: the same two calls, eager
    x_torch = torch.from_numpy(np.ascontiguousarray(np.concatenate(clips).transpose(0, 4, 1, 2, 3)))
    y_torch = torch.from_numpy(labels)
    optimizer = torch.optim.AdamW(tmodel.parameters(), lr=1e-5, weight_decay=1e-3)

    def torch_logits():
        return tmodel(x_torch).view(len(clips), args.batch, -1).mean(0)

    def torch_forward():
        tmodel.eval()
        with torch.inference_mode():
            torch_logits()

    def torch_step():
        tmodel.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(torch_logits(), y_torch).backward()
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
