"""bench/vs_torch.py's per-convolution breakdown: it must see every convolution of the backbone."""

import re

import numpy as np
from flax import nnx

from actlumos_jax.models import build_model
from actlumos_jax.models.r2plus1d import AxisFactoredConv
from bench import gpu_bench, vs_torch


def _tiny_student():
    args = type("Args", (), dict(frames=8, size=32, batch=2, dry_run=True))()
    return build_model(gpu_bench._model_config(args, "float32"), vs_torch.NUM_CLASSES, kind="student",  # pylint: disable=protected-access
                       rngs=nnx.Rngs(0, dropout=1, mask=2))


def test_conv_layers_counts_every_convolution_once():
    student = _tiny_student()
    convs = [m for _, m in nnx.iter_graph(student.backbone) if isinstance(m, AxisFactoredConv)]
    found = vs_torch.conv_layers(student, (2, 8, 32, 32, 3))
    assert sum(count for _, _, count in found) == len(convs)
    shapes = {shape for _, shape, _ in found}
    assert (2, 8, 32, 32, 3) in shapes  # the stem sees the clip itself


def test_layer_times_run_each_call_on_both_sides():
    # One convolution only: the full report compiles three programs for each of the 19.
    conv, shape, _ = vs_torch.conv_layers(_tiny_student(), (2, 8, 32, 32, 3))[1]
    times = vs_torch._layer_times(conv, shape, repeats=2, rng=np.random.default_rng(0))  # pylint: disable=protected-access
    assert sorted(times) == sorted(f"{side} {what}" for side in ("jax", "torch")
                                   for what in ("forward", "input grad", "kernel grad"))
    assert all(len(v) == 2 and min(v) > 0 for v in times.values())


def test_teacher_shape_runs_both_streams_on_both_sides(capsys):
    vs_torch.main(["--small", "--teacher", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "2 stream(s)" in out and "JAX teacher" in out
    assert re.search(r"one training step \(AdamW\).*\d+\.\d+ \[.*\]x", out)
