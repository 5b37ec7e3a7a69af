"""bench/vs_torch.py's per-convolution breakdown: it must see every convolution of the backbone."""

import re

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


def test_layers_report_prints_a_row_per_distinct_convolution(capsys):
    vs_torch.main(["--small", "--layers", "--repeats", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\d+x\d+x\d+/\d+x\d+x\d+ ", line)]
    assert len(rows) == len(vs_torch.conv_layers(_tiny_student(), (2, 8, 32, 32, 3)))
    assert all(len(re.findall(r"\d+\.\d+x", row)) == 3 for row in rows)  # forward, input and kernel gradient
    assert "all convolutions" in out


def test_teacher_shape_runs_both_streams_on_both_sides(capsys):
    vs_torch.main(["--small", "--teacher", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "2 stream(s)" in out and "JAX teacher" in out
    assert re.search(r"one training step \(AdamW\).*\d+\.\d+ \[.*\]x", out)
