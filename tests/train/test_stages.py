"""What a stage owns (registry, rows), and when stored results may be reused (the config fingerprint)."""

import json

import pytest

from actlumos_jax.checkpoint_compat import CheckpointError
from actlumos_jax.train import fingerprint, loop
from actlumos_jax.train.stages import REGISTRY, make_stage
from configs import base, kd_student
from tests.train.helpers import tiny_config


def test_every_stage_module_registers_its_stage():
    assert {"teacher", "ssl", "kd"} <= set(REGISTRY)
    for name in REGISTRY:
        config = tiny_config("teacher")
        config.stage = name
        stage = make_stage(config)
        assert stage.name == name and stage.model_kind in ("teacher", "student") and stage.row_title()
    c = tiny_config("teacher")
    c.stage = "distill_everything"
    with pytest.raises(ValueError, match="config.stage must be one of"):
        make_stage(c)


@pytest.mark.parametrize("student_workdir, kd_weight, title", [
    ("/w/ssl", 1.0, "Student: SSL + KD (dark)"), ("/w/ssl", 0.0, "Student: SSL only (dark)"),
    ("", 1.0, "Student: KD only (dark)"), ("", 0.0, "Student: CE only (dark)")])
def test_the_kd_row_names_what_the_student_was_trained_with(student_workdir, kd_weight, title):
    c = tiny_config("kd", **{"init.student_workdir": student_workdir, "loss.kd_weight": kd_weight})
    assert make_stage(c).row_title() == title
    assert make_stage(c).needs_teacher == (kd_weight > 0)


def test_a_finished_stage_is_not_reused_under_another_config(tmp_path):
    trained = tiny_config("kd")
    record = {"stage": "kd", "metrics": {"test_top1": 40.0}, "parameters": 1,
              "config": json.loads(trained.to_json_best_effort())}
    (tmp_path / "final_metrics.json").write_text(json.dumps(record))
    # How a run is carried out (workers, logging, saves) is not what it computes: reused.
    same = tiny_config("kd", **{"data.num_workers": 3, "log_every_steps": 7, "checkpoint.async_save": True})
    assert loop.run_stage(same, tmp_path).metrics == {"test_top1": 40.0}
    changed = tiny_config("kd", **{"loss.kd_temperature": 2.0, "seed": 1})
    with pytest.raises(CheckpointError) as err:
        loop.run_stage(changed, tmp_path)
    message = str(err.value)
    assert "2 difference(s)" in message and "loss.kd_temperature: stored 4.0, now 2.0" in message
    assert "seed: stored 0, now 1" in message and "new --workdir" in message


def test_differences_compare_tuples_and_lists_alike():
    a = {"data": {"resize": (36, 48)}, "mesh": {"num_devices": 8}}
    b = {"data": {"resize": [36, 48]}, "mesh": {"num_devices": 1}}
    assert fingerprint.differences(a, b) == []
    assert fingerprint.differences(a, {"data": {"resize": [36, 64]}}) == [
        "data.resize: stored [36, 48], now [36, 64]"]


def test_pipeline_keys_take_effect_in_the_stages_or_are_refused():
    c = kd_student.get_config("size=tiny")
    c.model.fusion, c.model.fusion_hidden, c.ssl.variant = "concat", 5, "temporal"
    teacher, ssl = c.prerequisites.teacher, c.prerequisites.ssl
    assert (teacher.model.fusion, teacher.model.fusion_hidden, ssl.ssl.variant) == ("concat", 5, "temporal")
    base.validate_pipeline(c)
    c.init.backbone_checkpoint = "/weights/ig65m"
    with pytest.raises(ValueError, match="would be overwritten by the SSL student's weights"):
        base.validate_pipeline(c)
    c.pipeline.kd_only_baseline = True  # the KD-only student reads it
    base.validate_pipeline(c)


def test_selecting_on_validation_needs_a_validation_split():
    c = base.get_config("")
    c.dataset.val_fraction = 0.0
    with pytest.raises(ValueError, match="leaves no validation split"):
        base.validate(c)
    c.eval.select, c.optim.schedule = "last", "warmup_cosine"
    base.validate(c)
    assert loop.protocol(c, make_stage(c)).startswith("last checkpoint; no validation split")


def test_a_prerequisite_stage_is_validated_under_its_own_keys():
    from configs import base, kd_student  # pylint: disable=g-import-not-at-top
    from data_pipelines.bad_input import InputError  # pylint: disable=g-import-not-at-top

    c = kd_student.get_config("size=tiny")
    base.validate_pipeline(c)
    c.prerequisites.teacher.train.clips_per_class = 0
    with pytest.raises(InputError, match=r"config\.prerequisites\.teacher\.train\.clips_per_class must be >= 1"):
        base.validate_pipeline(c)
