"""actlumos-eval: the training's own evaluation numbers at 1x1 views, per-class accuracy, confusion, splits."""

import json

import jax
import numpy as np
import pytest

from actlumos_jax.inference import evaluate
from actlumos_jax.inference.model import load_student_model
from actlumos_jax.train import input_pipeline, warm_start
from actlumos_jax.train.stages import make_stage
from data_pipelines import datasets


def training_evaluation(student_dir, dataset):
    """The stage's test metrics as ``loop.evaluate`` computes them: its eval loader, its ``eval_sums``."""
    config = warm_start.saved_config(student_dir, warm_start.selected_step(student_dir))
    model, _, _, _ = load_student_model(student_dir)
    info, records = datasets.read_split("arid10", root=dataset.root, split=1, subset="test")
    sums = {}
    for batch in input_pipeline.make_eval_loader(config, records, info, "supervised"):
        inputs, _ = input_pipeline.step_inputs(batch, ("video", "label", "mask"))
        for k, v in jax.device_get(make_stage(config).eval_sums(model, inputs, None)).items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {"top1": 100 * sums["top1_correct"] / sums["count"], "top5": 100 * sums["top5_correct"] / sums["count"],
            "loss": sums["loss_sum"] / sums["count"], "clips": sums["count"]}


def test_eval_reproduces_the_training_evaluation(student_dir, dataset, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert evaluate.main([str(student_dir), "--output", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    result = report["splits"]["1"]
    expected = training_evaluation(student_dir, dataset)
    assert result["clips"] == expected["clips"] == 11
    assert result["top1"] == pytest.approx(expected["top1"])
    assert result["top5"] == pytest.approx(expected["top5"])
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    confusion = np.asarray(result["confusion_matrix"])
    assert confusion.shape == (11, 11) and confusion.sum() == 11 and (confusion.sum(axis=1) == 1).all()
    assert 100 * np.trace(confusion) / 11 == pytest.approx(result["top1"])
    per_class = {p["class"]: p for p in result["per_class"]}
    assert per_class["Drink"]["clips"] == 1 and per_class["Drink"]["accuracy"] in (0.0, 100.0)
    assert result["mean_class_accuracy"] == pytest.approx(np.mean([p["accuracy"] for p in per_class.values()]))
    assert [r["clip_id"] for r in result["predictions"]][:1] == ["Drink/Drink_23_1.mp4"]
    assert report["training_test_metrics"]["test_top1"] == 9.09  # what the stage recorded, for comparison
    assert "arid10 split1_test: top-1" in capsys.readouterr().err


def test_all_splits_give_mean_and_std(student_dir, tmp_path, capsys):
    out = tmp_path / "all.json"
    assert evaluate.main([str(student_dir), "--all-splits", "--views", "1x3", "-o", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert sorted(report["splits"]) == ["1", "2", "3"]
    assert report["splits"]["2"]["views"] == "1 temporal clip x 3 spatial crops"
    # The fake dataset lists the same clips in every split: equal results, std 0.
    top1 = [r["top1"] for r in report["splits"].values()]
    assert report["mean"]["top1"] == pytest.approx(np.mean(top1)) and report["mean"]["top1_std"] == 0.0
    assert "mean over 3 splits: top-1" in capsys.readouterr().err
    assert evaluate.main([str(student_dir), "--all-splits", "--split", "2"]) == 2
    assert "not both" in capsys.readouterr().err


def test_metrics_of_a_known_confusion():
    labels = np.array([0, 0, 1, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    m = evaluate.metrics_of(labels, probs, ("a", "b", "c"))
    assert m["top1"] == 75.0 and m["top5"] == 100.0
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert [p["accuracy"] for p in m["per_class"]] == [50.0, 100.0, 100.0]
    assert m["mean_class_accuracy"] == pytest.approx(250 / 3)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.2, 0.8, 0.4])))
