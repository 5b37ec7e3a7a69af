"""One GPU benchmark run, written as JSON: ``bash bench/gpu.sh`` (``--dry-run``: tiny shapes on CPU).

    python -m bench.gpu_bench [--out FILE] [--dry-run] [--batch 8] [--frames 64] [--size 112]
                              [--repeats 5] [--budget_s 420] [--peak_tflops_bf16 X --peak_tflops_fp32 Y]

What it measures, each on one device (the first), in this order of priority
(a part that the time budget leaves no room for is listed under "skipped"):

* ``jax.student``: the full-size student's training step (uint8 clip -> IG-65M
  normalisation -> R(2+1)D-34 + encoder -> cross-entropy -> AdamW), as clips/s,
  in bfloat16 and float32 compute, on both convolution paths: ``factored``
  (`AxisFactoredConv`: the (1,3,3) and (3,1,1) kernels as 2-D convolutions, the
  default) and ``3d`` (XLA's own 3-D convolutions, as bench/model_forward.py
  switches them). MFU against 3 x 602 GFLOP per 64x112x112 clip (forward and
  backward, the paper's figure; ``mfu_paper``) and against XLA's own count of
  the compiled step's FLOPs (``mfu_xla``).
* ``jax.teacher``: the teacher's step (dark + multi-scale retinex streams, DFF,
  CE + 0.1 SupCon, AdamW) and the time of the on-device retinex alone
  (uint8 -> the two normalised streams), with its share of the step.
* ``torch``: the same backbone (R(2+1)D-34 IG-65M, bench/torch_r2plus1d.py,
  without the one-layer temporal encoder) on PyTorch when torch imports: fp32,
  AMP bf16, AMP bf16 + ``channels_last_3d``, and that under ``torch.compile``
  (the first step's time apart, as ``compile_s``). FLOPs counted by
  torch.utils.flop_counter; fp32 convolutions may use TF32 on both sides
  (XLA's and cuDNN's defaults), so float32 MFU is against the TF32 peak.

JAX and torch run in two child processes one after the other, so neither
holds GPU memory the other needs. Step times are per step (synchronised), with
median / min / max over ``--repeats``; compile time is reported apart. A batch
that does not fit is halved until it does (the batch used is recorded).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

PAPER_GFLOP_PER_CLIP = 602.0  # forward of the student at 64 x 112 x 112 (the paper's figure)
TRAIN_FLOP_FACTOR = 3  # forward + backward ~ 3 forwards
IG65M_MEAN = (0.43216, 0.394666, 0.37645)  # = data_pipelines.transforms' (tests/test_gpu_bench.py checks)
IG65M_STD = (0.22803, 0.22145, 0.216989)
NUM_CLASSES = 11
# Dense peak TFLOP/s per device: bfloat16 tensor cores, and TF32 tensor cores for float32.
# First match of the device kind (case-insensitive substrings) wins.
PEAK_TFLOPS = [
    (("h100", "pcie"), {"bfloat16": 756.0, "float32": 378.0}),
    (("h100", "nvl"), {"bfloat16": 835.0, "float32": 418.0}),
    (("h100",), {"bfloat16": 989.4, "float32": 494.7}),  # SXM
    (("h200",), {"bfloat16": 989.4, "float32": 494.7}),
    (("gh200",), {"bfloat16": 989.4, "float32": 494.7}),
    (("b200",), {"bfloat16": 2250.0, "float32": 1100.0}),
    (("a100",), {"bfloat16": 312.0, "float32": 156.0}),
    (("l40s",), {"bfloat16": 362.0, "float32": 183.0}),
]
TINY_MODEL = dict(depth=10, width=0.125, variant="torchvision", num_heads=2, fusion_hidden=16, projection_dim=16)


def peak_tflops(device_kind: str, args) -> dict:
    given = {"bfloat16": args.peak_tflops_bf16, "float32": args.peak_tflops_fp32}
    if all(v is not None for v in given.values()):
        return given
    kind = device_kind.lower()
    table = next((peaks for keys, peaks in PEAK_TFLOPS if all(k in kind for k in keys)), {})
    return {k: given[k] if given[k] is not None else table.get(k) for k in given}


def stats(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median": ordered[len(ordered) // 2], "min": ordered[0], "max": ordered[-1], "repeats": len(times)}


def mfu(flops_per_clip: float | None, clips_per_s: float, peak: float | None) -> float | None:
    if not flops_per_clip or not peak:
        return None
    return flops_per_clip * clips_per_s / (peak * 1e12)


def paper_flops_per_clip(args) -> float | None:
    """3 x 602 GFLOP per 64x112x112 clip, scaled to other clip sizes; None for the dry run's tiny model."""
    if args.dry_run:
        return None
    return TRAIN_FLOP_FACTOR * PAPER_GFLOP_PER_CLIP * 1e9 * (args.frames / 64) * (args.size / 112) ** 2


def _loss_entry(loss: float) -> dict:
    """The last step's loss; a non-finite one (strict JSON has no NaN) is null, with a warning."""
    if math.isfinite(loss):
        return {"loss": loss}
    return {"loss": None, "warning": f"the loss became {loss} (the timings stand; the numbers trained on are wrong)"}


def _is_oom(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return "resource_exhausted" in text or "out of memory" in text or "outofmemory" in text


def with_batch_halving(fn, batch: int, record: dict):
    """fn(batch) -> dict; on out-of-memory retries at half the batch (the batch used is in the result)."""
    while True:
        try:
            result = fn(batch)
            result["batch"] = batch
            return result
        except Exception as e:  # pylint: disable=broad-except
            if not _is_oom(e) or batch == 1:
                raise
            record.setdefault("oom_batches", []).append(batch)
            batch //= 2


class Budget:
    def __init__(self, seconds: float | None):
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()


def run_parts(parts, budget: Budget, out: dict):
    """parts: [(name, min seconds, fn)] in priority order; each result or error lands in ``out``."""
    for name, needed, fn in parts:
        if budget.left() < needed:
            out.setdefault("skipped", []).append(f"{name}: time budget ({budget.left():.0f} s left, ~{needed} s needed)")
            continue
        start = time.monotonic()
        try:
            value = fn()
        except Exception as e:  # pylint: disable=broad-except
            value = {"error": f"{type(e).__name__}: {str(e)[:2000]}", "traceback": traceback.format_exc()[-4000:]}
        value["wall_s"] = time.monotonic() - start
        node = out
        *path, leaf = name.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = value
        print(f"[gpu_bench] {name}: {_summary(value)}", file=sys.stderr, flush=True)


def _summary(value: dict) -> str:
    if "error" in value:
        return "error: " + value["error"].splitlines()[0][:300]
    keys = ("batch", "clips_per_s", "compile_s", "mfu_paper", "mfu_xla", "mfu_counted", "retinex_share")
    return ", ".join(f"{k}={value[k]:.4g}" if isinstance(value[k], float) else f"{k}={value[k]}"
                     for k in keys if value.get(k) is not None)


# ----------------------------------------------------------------------------- JAX


def jax_part(args) -> dict:
    import jax  # pylint: disable=g-import-not-at-top

    if args.jax_cache:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(args.jax_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    budget = Budget(None if args.dry_run else args.budget_s)
    device = jax.devices()[0]
    out = {"device_kind": device.device_kind, "platform": device.platform, "device_count": jax.device_count(),
           "jax": jax.__version__, "peak_tflops": peak_tflops(device.device_kind, args)}
    try:
        import flax  # pylint: disable=g-import-not-at-top
        out["flax"] = flax.__version__
    except ImportError:
        pass
    need = 5 if args.dry_run else 60
    student = lambda dtype, conv: (lambda: with_batch_halving(
        lambda b: jax_student_step(args, dtype, conv, b, out["peak_tflops"][dtype]), args.batch, {}))
    parts = [
        ("student.bfloat16.factored", need, student("bfloat16", "factored")),
        ("student.bfloat16.3d", need, student("bfloat16", "3d")),
        ("student.float32.factored", need, student("float32", "factored")),
        ("teacher", need * 2, lambda: with_batch_halving(lambda b: jax_teacher_step(args, b), args.batch, {})),
        ("student.float32.3d", need, student("float32", "3d")),
    ]
    run_parts(parts, budget, out)
    for dtype in ("bfloat16", "float32"):
        paths = out.get("student", {}).get(dtype, {})
        if all("clips_per_s" in paths.get(p, {}) for p in ("factored", "3d")):
            paths["3d_over_factored_step_time"] = paths["factored"]["clips_per_s"] / paths["3d"]["clips_per_s"]
    return out


def _model_config(args, dtype: str):
    from actlumos_jax.models import default_model_config  # pylint: disable=g-import-not-at-top

    config = default_model_config()
    config.dtype = dtype
    config.num_frames = args.frames
    if args.dry_run:
        t = TINY_MODEL
        config.backbone.update(depth=t["depth"], width=t["width"], variant=t["variant"])
        config.encoder.num_heads = t["num_heads"]
        config.encoder.key_keep_prob = 1.0
        config.fusion_hidden, config.projection_dim = t["fusion_hidden"], t["projection_dim"]
    return config


def _standardize(x01, dtype):
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

    mean, std = jnp.asarray(IG65M_MEAN, jnp.float32), jnp.asarray(IG65M_STD, jnp.float32)
    return ((x01 - mean) / std).astype(dtype)


def _inputs(args, batch: int, balanced: bool = False):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

    video = jax.random.randint(jax.random.key(0), (batch, args.frames, args.size, args.size, 3), 0, 256, jnp.int32)
    labels = (jnp.arange(batch) // 2 if balanced else jnp.arange(batch)) % NUM_CLASSES
    return video.astype(jnp.uint8), labels


def _compile(fn, *example):
    """(compiled, seconds, XLA's FLOP count of one call or None)."""
    start = time.perf_counter()
    compiled = fn.lower(*example).compile()
    seconds = time.perf_counter() - start
    flops = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"]) if cost and cost.get("flops", 0) > 0 else None
    except Exception:  # pylint: disable=broad-except  # not every backend reports it
        pass
    return compiled, seconds, flops


def _time_state_steps(compiled, state, other, repeats: int):
    import jax  # pylint: disable=g-import-not-at-top

    state, loss = compiled(state, *other)  # warm-up
    jax.block_until_ready(loss)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, loss = compiled(state, *other)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    return state, float(loss), times


def _train_state(model, learning_rate=1e-5):
    import optax  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top

    graphdef, params, batch_stats, rngs = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    tx = optax.adamw(learning_rate, weight_decay=1e-3)
    return graphdef, tx, (params, batch_stats, rngs, tx.init(params))


def _make_step(graphdef, tx, loss_of_model):
    """A training step over state (params, batch_stats, rngs, opt_state), as actlumos_jax/train/steps.py's."""
    import jax  # pylint: disable=g-import-not-at-top
    import optax  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top

    def step(state, video, labels):
        params, batch_stats, rngs, opt_state = state

        def loss_fn(p):
            model = nnx.merge(graphdef, p, batch_stats, rngs, copy=True)
            model.train()
            loss = loss_of_model(model, video, labels)
            _, _, new_stats, new_rngs = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
            return loss, (new_stats, new_rngs)

        (loss, (new_stats, new_rngs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_stats, new_rngs, opt_state), loss

    return jax.jit(step, donate_argnums=(0,))


def jax_student_step(args, dtype: str, conv: str, batch: int, peak: float | None) -> dict:
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top

    from actlumos_jax import losses  # pylint: disable=g-import-not-at-top
    from actlumos_jax.models import build_model, parameter_count  # pylint: disable=g-import-not-at-top
    from bench.model_forward import conv_path  # pylint: disable=g-import-not-at-top

    model = build_model(_model_config(args, dtype), NUM_CLASSES, kind="student", rngs=nnx.Rngs(0, dropout=1, mask=2))
    num_params = parameter_count(model)
    graphdef, tx, state = _train_state(model)
    del model

    def loss_of_model(model, video, labels):
        x = _standardize(video.astype(jnp.float32) / 255.0, jnp.dtype(dtype))
        return losses.cross_entropy(model(x).logits, labels)

    video, labels = _inputs(args, batch)
    with conv_path(conv):  # the path is chosen while tracing
        compiled, compile_s, flops = _compile(_make_step(graphdef, tx, loss_of_model), state, video, labels)
    state, loss, times = _time_state_steps(compiled, state, (video, labels), args.repeats)
    step = stats(times)
    clips_per_s = batch / step["median"]
    del state
    jax.clear_caches()
    return {"compile_s": compile_s, "step_s": step, "clips_per_s": clips_per_s, **_loss_entry(loss),
            "params": num_params, "xla_flops_per_clip": None if flops is None else flops / batch,
            "mfu_paper": mfu(paper_flops_per_clip(args), clips_per_s, peak),
            "mfu_xla": mfu(None if flops is None else flops / batch, clips_per_s, peak)}


def jax_teacher_step(args, batch: int) -> dict:
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top

    from actlumos_jax import enhance, losses  # pylint: disable=g-import-not-at-top
    from actlumos_jax.models import build_model  # pylint: disable=g-import-not-at-top

    dtype = jnp.dtype(args.teacher_dtype)

    def streams(video):
        dark01 = video.astype(jnp.float32) / 255.0
        return _standardize(dark01, dtype), _standardize(enhance.multi_scale_retinex(dark01), dtype)

    def loss_of_model(model, video, labels):
        out = model(*streams(video))
        ce = losses.cross_entropy(out.logits, labels)
        views = jnp.concatenate([out.embed_dark, out.embed_retinex])
        return ce + 0.1 * losses.supcon(views, jnp.concatenate([labels, labels]), temperature=0.1)

    model = build_model(_model_config(args, args.teacher_dtype), NUM_CLASSES, kind="teacher",
                        rngs=nnx.Rngs(0, dropout=1, mask=2))
    graphdef, tx, state = _train_state(model)
    del model
    video, labels = _inputs(args, batch, balanced=True)
    compiled, compile_s, _ = _compile(_make_step(graphdef, tx, loss_of_model), state, video, labels)
    state, loss, times = _time_state_steps(compiled, state, (video, labels), args.repeats)
    del state
    step = stats(times)

    retinex, _, _ = _compile(jax.jit(streams), video)
    jax.block_until_ready(retinex(video))
    retinex_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(retinex(video))
        retinex_times.append(time.perf_counter() - start)
    jax.clear_caches()
    retinex_s = stats(retinex_times)
    return {"dtype": args.teacher_dtype, "compile_s": compile_s, "step_s": step, "clips_per_s": batch / step["median"],
            **_loss_entry(loss), "retinex_s": retinex_s,
            # An upper bound: inside the step XLA may overlap or fuse it with the backbone.
            "retinex_share": retinex_s["median"] / step["median"]}


# ----------------------------------------------------------------------------- PyTorch

TORCH_VARIANTS = {  # name: (autocast bf16, channels_last_3d, torch.compile)
    "amp_bf16": (True, False, False),
    "amp_bf16_channels_last_3d": (True, True, False),
    "fp32": (False, False, False),
    "amp_bf16_channels_last_3d_compile": (True, True, True),
}


def torch_part(args) -> dict:
    try:
        import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
        return {"available": False, "reason": f"torch does not import: {e}"}
    budget = Budget(None if args.dry_run else args.budget_s)
    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda" if cuda else "cpu")
    kind = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    out = {"available": True, "torch": torch.__version__, "device": str(device), "device_kind": kind,
           "peak_tflops": peak_tflops(kind, args) if cuda else peak_tflops("", args),
           "model": "R(2+1)D-34 IG-65M backbone + linear head (bench/torch_r2plus1d.py), no temporal encoder"}
    if cuda:
        torch.backends.cudnn.benchmark = True
    flops = {}
    need = 5 if args.dry_run else 30
    parts = []
    for name, (amp, channels_last, compiled) in TORCH_VARIANTS.items():
        fn = (lambda amp=amp, cl=channels_last, c=compiled: with_batch_halving(
            lambda b: torch_student_step(args, device, b, amp, cl, c, flops, out["peak_tflops"]), args.batch, {}))
        parts.append((name, need * (4 if compiled else 1), fn))
    run_parts(parts, budget, out)
    return out


def torch_student_step(args, device, batch: int, amp: bool, channels_last: bool, compiled: bool,
                       flops: dict, peaks: dict) -> dict:
    import torch  # pylint: disable=g-import-not-at-top
    import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

    from bench.torch_r2plus1d import DEPTHS, R2Plus1D  # pylint: disable=g-import-not-at-top

    torch.manual_seed(0)
    if args.dry_run:
        model = R2Plus1D(NUM_CLASSES, DEPTHS[TINY_MODEL["depth"]], TINY_MODEL["width"])
    else:
        model = R2Plus1D(NUM_CLASSES)
    model = model.to(device).train()
    x = torch.randn(batch, 3, args.frames, args.size, args.size, device=device)
    y = torch.arange(batch, device=device) % NUM_CLASSES
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=1e-3)
    forward = torch.compile(model, backend=args.torch_compile_backend) if compiled else model
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()
        return loss

    if batch not in flops:  # one counted step (eager, fp32 graph): FLOPs of forward + backward
        from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=g-import-not-at-top
        counter = FlopCounterMode(display=False)
        with counter:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        flops[batch] = counter.get_total_flops() / batch
    start = time.perf_counter()
    step()
    sync()
    first_s = time.perf_counter() - start
    step()  # warm-up (cudnn.benchmark has picked its algorithms in the first)
    sync()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - start)
    timing = stats(times)
    clips_per_s = batch / timing["median"]
    peak = peaks.get("bfloat16" if amp else "float32")
    result = {"compile_s": first_s if compiled else None, "first_step_s": first_s, "step_s": timing,
              "clips_per_s": clips_per_s, **_loss_entry(float(loss.detach())),
              "counted_flops_per_clip": flops[batch], "mfu_counted": mfu(flops[batch], clips_per_s, peak),
              "mfu_paper": mfu(paper_flops_per_clip(args), clips_per_s, peak)}
    del model, optimizer, forward
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


# ----------------------------------------------------------------------------- the run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/gpu_bench.json")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                        help="tiny model (R(2+1)D-10 at 1/8 width) and clips (2 x 8 x 32 x 32) on CPU, no budget")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default 8; dry run 2)")
    parser.add_argument("--frames", type=int, default=None, help="default 64 (dry run 8)")
    parser.add_argument("--size", type=int, default=None, help="default 112 (dry run 32)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per measurement (default 5; dry run 2)")
    parser.add_argument("--budget_s", type=float, default=420.0,
                        help="seconds for all measurements (JAX gets 60%%, then torch the rest)")
    parser.add_argument("--teacher_dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--peak_tflops_bf16", type=float, default=None, help="default: from the device kind")
    parser.add_argument("--peak_tflops_fp32", type=float, default=None, help="default: from the device kind (TF32)")
    parser.add_argument("--torch_compile_backend", default=None,
                        help="torch.compile's backend (default inductor; dry run: eager, as CPU inductor "
                             "compiles for minutes)")
    parser.add_argument("--skip_torch", action="store_true")
    parser.add_argument("--jax_cache", default=None,
                        help="a persistent XLA compilation cache (compile_s then times a cache hit); default: "
                             "none, dry run: ~/.cache/actlumos_jax/xla-dry-run")
    parser.add_argument("--part", choices=("all", "jax", "torch"), default="all", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = dict(batch=2, frames=8, size=32, repeats=2) if args.dry_run else dict(batch=8, frames=64, size=112,
                                                                                       repeats=5)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.jax_cache is None and args.dry_run:
        args.jax_cache = "~/.cache/actlumos_jax/xla-dry-run"
    if args.torch_compile_backend is None:
        args.torch_compile_backend = "eager" if args.dry_run else "inductor"
    return args


def _child(args, part: str, budget_s: float, argv: list[str]) -> dict:
    """One part in its own process (its GPU memory is freed when it exits); its JSON, or the failure."""
    partial = Path(f"{args.out}.{part}.json")
    partial.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.gpu_bench", *argv, f"--part={part}", f"--out={partial}",
           f"--budget_s={budget_s}"]
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)
    if partial.is_file():
        result = json.loads(partial.read_text())
        partial.unlink()
        if proc.returncode:
            result["exit_code"] = proc.returncode
        return result
    return {"error": f"the {part} process exited with {proc.returncode} and wrote nothing", "stdout": proc.stdout[-4000:]}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.part != "all":
        result = jax_part(args) if args.part == "jax" else torch_part(args)
        Path(args.out).write_text(json.dumps(result, indent=1, default=str, allow_nan=False))
        return
    start = time.monotonic()
    forwarded = [f"--batch={args.batch}", f"--frames={args.frames}", f"--size={args.size}",
                 f"--repeats={args.repeats}", f"--teacher_dtype={args.teacher_dtype}",
                 f"--torch_compile_backend={args.torch_compile_backend}", f"--jax_cache={args.jax_cache or ''}"]
    forwarded += ["--dry-run"] * args.dry_run
    forwarded += [f"--{k}={getattr(args, k)}" for k in ("peak_tflops_bf16", "peak_tflops_fp32")
                  if getattr(args, k) is not None]
    report = {"meta": {
        "dry_run": args.dry_run, "clip": {"batch": args.batch, "frames": args.frames, "size": args.size},
        "repeats": args.repeats, "budget_s": args.budget_s, "python": sys.version.split()[0],
        "host": platform.node(), "argv": argv,
        "paper_train_flops_per_clip": paper_flops_per_clip(args),
        "model": "tiny: R(2+1)D-10 at 1/8 width" if args.dry_run else "full: R(2+1)D-34 IG-65M + encoder",
    }}
    report["jax"] = _child(args, "jax", 0.6 * args.budget_s, forwarded)
    if args.skip_torch:
        report["torch"] = {"available": False, "reason": "--skip_torch"}
    else:
        left = args.budget_s - (time.monotonic() - start)
        report["torch"] = _child(args, "torch", max(left, 0.0), forwarded)
    report["comparison"] = comparison(report)
    report["meta"]["wall_s"] = time.monotonic() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str, allow_nan=False))
    print(json.dumps(report["comparison"], indent=1))
    print(f"wrote {args.out} ({report['meta']['wall_s']:.0f} s)")


def comparison(report: dict) -> dict:
    """The headline ratios: JAX student clips/s over torch's, per precision."""
    jax_student, torch_res = report.get("jax", {}).get("student", {}), report.get("torch", {})
    pick = lambda node: node.get("clips_per_s") if isinstance(node, dict) else None
    rows = {
        "jax_bf16_factored_clips_per_s": pick(jax_student.get("bfloat16", {}).get("factored")),
        "jax_bf16_3d_clips_per_s": pick(jax_student.get("bfloat16", {}).get("3d")),
        "jax_fp32_factored_clips_per_s": pick(jax_student.get("float32", {}).get("factored")),
        "jax_fp32_3d_clips_per_s": pick(jax_student.get("float32", {}).get("3d")),
        **{f"torch_{name}_clips_per_s": pick(torch_res.get(name)) for name in TORCH_VARIANTS},
    }
    best_torch_bf16 = max((v for k, v in rows.items() if k.startswith("torch_amp") and v), default=None)
    best_jax_bf16 = max((v for k, v in rows.items() if k.startswith("jax_bf16") and v), default=None)
    rows["jax_over_best_torch_bf16"] = (best_jax_bf16 / best_torch_bf16
                                        if best_jax_bf16 and best_torch_bf16 else None)
    if rows["jax_fp32_factored_clips_per_s"] and rows["torch_fp32_clips_per_s"]:
        rows["jax_over_torch_fp32"] = rows["jax_fp32_factored_clips_per_s"] / rows["torch_fp32_clips_per_s"]
    return rows


if __name__ == "__main__":
    main()
