"""actlumos-predict: the training's evaluation clips, windows batched across videos, and bad input."""

import json

import numpy as np
import pytest

from actlumos_jax.inference import clips as clips_lib
from actlumos_jax.inference import predict
from actlumos_jax.inference.model import Preprocessing, load_predictor
from actlumos_jax.train import input_pipeline, warm_start
from data_pipelines import datasets
from tests.data.fixtures import write_clip, write_corrupt_video
from tests.inference.conftest import stage_config, write_stage


def test_clips_are_the_training_evaluation_clips(student_dir, dataset):
    """1x1 views decode, crop and convert every test clip to the same bytes as the training's eval loader."""
    config = warm_start.saved_config(student_dir, warm_start.selected_step(student_dir))
    info, records = datasets.read_split("arid10", root=dataset.root, split=1, subset="test")
    loader = input_pipeline.make_eval_loader(config, records, info, "supervised")
    expected = np.concatenate([batch["video"][batch["mask"]] for batch in loader])
    prep = Preprocessing.from_config(config)
    got = np.stack([clips_lib.read_clips(r.path, prep, clips_lib.Views(temporal=1)).clips[0] for r in records])
    assert got.shape == (len(records), 8, 32, 32, 3)
    np.testing.assert_array_equal(got, expected)


def test_predict_writes_one_line_per_video(student_dir, dataset, tmp_path, capsys):
    bad = write_corrupt_video(tmp_path / "bad.mp4")
    short = tmp_path / "short.mp4"
    write_clip(short, 7, num_frames=12, height=48, width=64)
    out = tmp_path / "out.jsonl"
    drink = sorted((dataset.root / "Drink").iterdir())
    rc = predict.main([str(student_dir), str(dataset.root / "Drink"), str(bad), str(short), "--output", str(out),
                       "--top-k", "3", "--window-stride", "4", "--batch-size", "3", "--no-progress"])
    assert rc == 1  # one input failed; the others ran
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["path"] for line in lines] == [str(p) for p in drink] + [str(bad), str(short)]
    n = len(drink)
    assert set(lines[n]) == {"path", "error"} and "bad.mp4: not a readable video" in lines[n]["error"]

    predictor = load_predictor(student_dir)
    for path, line in zip(drink, lines):
        assert not line["wrapped"] and line["num_frames"] == 40 and line["fps"] == 30
        # 40 frames, windows of 29 every 4 frames: starts 1, 5, 9, centred.
        assert [(w["start_frame"], w["end_frame"]) for w in line["windows"]] == [(1, 30), (5, 34), (9, 38)]
        assert line["windows"][1]["start_s"] == pytest.approx(5 / 30, abs=1e-4)
        assert line["windows"][1]["end_s"] == pytest.approx(34 / 30, abs=1e-4)
        # Batches of 3 mixed windows of several videos give each window its own clip's probabilities.
        video = clips_lib.read_clips(path, predictor.preprocessing, clips_lib.Views(stride=4))
        probs = predict.softmax(predictor.logits(video.clips))
        for window, p in zip(line["windows"], probs):
            assert len(window["top_k"]) == 3
            names = [name for name, _ in window["top_k"]]
            assert names == [predictor.class_names[i] for i in np.argsort(-p, kind="stable")[:3]]
            assert [q for _, q in window["top_k"]] == pytest.approx(np.sort(p)[::-1][:3], abs=1e-5)
        mean = probs.mean(axis=0)
        assert [q for _, q in line["top_k"]] == pytest.approx(np.sort(mean)[::-1][:3], abs=1e-5)
    wrapped = lines[n + 1]
    assert wrapped["wrapped"] and len(wrapped["windows"]) == 1 and wrapped["num_frames"] == 12
    assert "wrap around, as training reads short clips" in wrapped["note"]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"actlumos-predict: error: {bad}: not a readable video" in err
    assert f"{n + 1} of {n + 2} videos classified" in err and "1 could not be read" in err


def test_multi_view_testing_averages_crops_and_clips(student_dir, dataset, tmp_path):
    video = sorted((dataset.root / "Jump").iterdir())[0]
    out = tmp_path / "views.jsonl"
    assert predict.main([str(student_dir), str(video), "-o", str(out), "--views", "3x3", "--no-progress"]) == 0
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["crops"] == 3 and [w["start_frame"] for w in line["windows"]] == [0, 5, 11]
    predictor = load_predictor(student_dir)
    video_clips = clips_lib.read_clips(video, predictor.preprocessing, clips_lib.Views(3, 3))
    assert video_clips.clips.shape[0] == 9
    probs = predict.softmax(predictor.logits(video_clips.clips)).mean(axis=0)
    assert [q for _, q in line["top_k"]] == pytest.approx(np.sort(probs)[::-1][:5], abs=1e-5)


def test_a_pipeline_workdir_uses_its_kd_student(student_dir, dataset, tmp_path, capsys):
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "kd_student").symlink_to(student_dir)
    video = sorted((dataset.root / "Run").iterdir())[0]
    assert predict.main([str(tmp_path / "pipe"), str(video), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["path"] == str(video)
    assert "is a pipeline workdir: using its kd_student stage" in captured.err


def _refused(capsys, argv, message):
    assert predict.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("actlumos-predict: error: ") and message in err and err.count("\n") == 1, err


def test_bad_input_is_one_line(student_dir, teacher_dir, dataset, tmp_path, capsys):
    video = str(sorted((dataset.root / "Run").iterdir())[0])
    _refused(capsys, [str(teacher_dir), video], "is a teacher stage")
    (tmp_path / "nothing").mkdir()
    _refused(capsys, [str(tmp_path / "nothing"), video], "holds no trained student")
    _refused(capsys, [str(tmp_path / "missing"), video], "no such directory")
    (tmp_path / "videos").mkdir()
    _refused(capsys, [str(student_dir), str(tmp_path / "videos")], "directory holds no video files")
    _refused(capsys, [str(student_dir), video, "--views", "3x4"], "spatial crops must be one of")
    ssl_dir = write_stage(tmp_path / "ssl", stage_config("ssl", dataset))
    _refused(capsys, [str(ssl_dir), video], "classification head was never trained")
