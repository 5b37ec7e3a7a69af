"""actlumos-report: PNGs and an index.html for every stage of a pipeline workdir."""

import json

import numpy as np

from actlumos_jax.inference import report
from data_pipelines import datasets


def test_report_of_a_pipeline_workdir(student_dir, teacher_dir, dataset, tmp_path, capsys):
    pipeline = tmp_path / "run"
    pipeline.mkdir()
    (pipeline / "teacher").symlink_to(teacher_dir)
    (pipeline / "kd_student").symlink_to(student_dir)
    # The embedded dataset's light sidecar, for two test clips: the gate figure draws the light beside the gate.
    _, records = datasets.read_split("arid10", root=dataset.root, split=1, subset="test")
    for i, record in enumerate(records[:2]):
        luma = 0.05 + 0.03 * np.sin(np.arange(40) / (3 + i))
        (dataset.root / record.clip_id).with_suffix(".json").write_text(
            json.dumps({"mean_luma_per_frame": luma.tolist()}))
    try:
        assert report.main([str(pipeline), "--out", str(tmp_path / "out"), "--gate-clips", "3", "--no-progress"]) == 0
    finally:
        for record in records[:2]:
            (dataset.root / record.clip_id).with_suffix(".json").unlink()
    out = tmp_path / "out"
    expected = {"teacher_curves.png", "teacher_gate.png", "teacher_confusion.png", "teacher_per_class.png",
                "kd_student_curves.png", "kd_student_confusion.png", "kd_student_per_class.png"}
    assert expected <= {p.name for p in out.glob("*.png")}
    for name in expected:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = (out / "index.html").read_text()
    for name in expected:
        assert f"src='{name}'" in index
    assert index.index("teacher_gate.png") < index.index("kd_student_curves.png")  # the recipe's order
    assert "recorded test_top1" in index and "evaluated top1" in index
    assert "7 figures" in capsys.readouterr().err


def test_report_refuses_a_directory_without_stages(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no training stage" in err and "Traceback" not in err
