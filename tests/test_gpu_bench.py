"""bench/gpu.sh --dry-run (bench/gpu_bench.py at tiny shapes on CPU) and its torch model.

The dry run keeps XLA's compiled programs in ~/.cache/actlumos_jax/xla-dry-run,
so only its first run on a machine compiles (about a minute on 2 busy cores).
"""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from bench import gpu_bench

ROOT = Path(__file__).resolve().parents[1]


def _numbers(node, path="report"):
    """(path, value) of every number in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numbers(value, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def _errors(node, path="report"):
    if isinstance(node, dict):
        if "error" in node:
            yield f"{path}: {node['error']}"
        for key, value in node.items():
            yield from _errors(value, f"{path}.{key}")


def test_dry_run_writes_every_figure_finite(tmp_path):
    out = tmp_path / "gpu.json"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", f"--out={out}",
                           "--peak_tflops_bf16=1", "--peak_tflops_fp32=0.5"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    report = json.loads(out.read_text())
    assert not list(_errors(report)), list(_errors(report))
    assert not report["jax"].get("skipped"), report["jax"]["skipped"]  # the dry run has no time budget
    assert report["meta"]["dry_run"] is True and report["jax"]["platform"] == "cpu"

    step_keys = {"batch", "compile_s", "step_s", "clips_per_s", "mfu_paper", "mfu_xla", "xla_flops_per_clip"}
    for dtype in ("bfloat16", "float32"):
        for path in ("factored", "3d"):
            entry = report["jax"]["student"][dtype][path]
            assert step_keys <= set(entry), (dtype, path, sorted(entry))
            assert entry["clips_per_s"] > 0 and entry["mfu_xla"] > 0
            assert entry["mfu_paper"] is None  # the tiny model is not the paper's 602 GFLOP student
        assert report["jax"]["student"][dtype]["3d_over_factored_step_time"] > 0
    teacher = report["jax"]["teacher"]
    assert {"step_s", "clips_per_s", "retinex_s", "retinex_share"} <= set(teacher)
    assert 0 < teacher["retinex_share"]

    for entry in [teacher] + [report["jax"]["student"][d][p] for d in ("bfloat16", "float32") for p in ("factored", "3d")]:
        assert isinstance(entry["loss"], float), entry  # JAX trains on finite numbers
    if report["torch"].get("available"):
        for variant in gpu_bench.TORCH_VARIANTS:
            entry = report["torch"][variant]
            assert {"batch", "step_s", "clips_per_s", "mfu_counted", "counted_flops_per_clip", "loss"} <= set(entry)
            assert entry["clips_per_s"] > 0 and entry["mfu_counted"] > 0
            # torch 2.14's CPU bf16 conv3d backward (channels-first) gives non-finite weight gradients
            # now and then: the dry run's AMP loss may go NaN, which the report says instead of hiding.
            assert isinstance(entry["loss"], float) or (variant.startswith("amp") and entry["warning"]), entry
        assert report["comparison"]["jax_over_best_torch_bf16"] > 0
    else:
        assert report["torch"]["reason"]

    for path, value in _numbers(report):
        assert math.isfinite(value), path


def test_gpu_sh_names_what_a_python_lacks(tmp_path):
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nexec python3 -S -I "$@"\n')  # no site-packages: no jax, no flax
    fake.chmod(0o755)
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run"], cwd=ROOT,
                          env=dict(os.environ, PYTHON=str(fake)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "lacks: " in proc.stderr and "jax" in proc.stderr, proc.stderr


def test_torch_r2plus1d_is_torchvisions_ig65m_network():
    pytest.importorskip("torchvision")
    from bench.torch_r2plus1d import R2Plus1D  # pylint: disable=g-import-not-at-top
    from tests.torch_reference import ig65m_r2plus1d_34  # pylint: disable=g-import-not-at-top

    ours, reference = R2Plus1D(400), ig65m_r2plus1d_34(400)
    shapes = lambda m: sorted(tuple(t.shape) for t in m.state_dict().values())
    assert shapes(ours) == shapes(reference)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


def test_normalisation_and_peaks():
    from data_pipelines import transforms  # pylint: disable=g-import-not-at-top

    assert gpu_bench.IG65M_MEAN == transforms.IG65M_MEAN and gpu_bench.IG65M_STD == transforms.IG65M_STD
    args = gpu_bench.parse_args([])
    assert gpu_bench.peak_tflops("NVIDIA H100 80GB HBM3", args) == {"bfloat16": 989.4, "float32": 494.7}
    assert gpu_bench.peak_tflops("NVIDIA H100 PCIe", args)["bfloat16"] == 756.0
    assert gpu_bench.peak_tflops("NVIDIA H200", args)["bfloat16"] == 989.4
    assert gpu_bench.peak_tflops("cpu", args) == {"bfloat16": None, "float32": None}
    # 3 x 602 GFLOP per 64 x 112 x 112 clip, the paper's training figure.
    assert gpu_bench.paper_flops_per_clip(args) == pytest.approx(3 * 602e9)
