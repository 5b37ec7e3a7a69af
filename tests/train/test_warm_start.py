"""Where a stage starts: damaged checkpoints, a student with another head, a teacher for other clips."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.checkpoint_compat import CheckpointError
from actlumos_jax.train import optim, warm_start
from actlumos_jax.train.checkpointing import StageCheckpointer
from actlumos_jax.train.state import create_train_state
from tests.train.helpers import tiny_config


def _save_stage(workdir, config, num_classes, steps=(1,), seed=0):
    """A finished stage's checkpoints of a freshly initialised model, as ``loop.train`` writes them."""
    model = warm_start.model_for_config(config.model, num_classes, "teacher" if config.stage == "teacher" else "student",
                                        seed)
    _, state = create_train_state(model, optim.make_optimizer(config.optim, 10), optim.plateau_transform(config.optim))
    checkpointer = StageCheckpointer(workdir / "checkpoints", best_metric="val_top1", async_save=False)
    for step in steps:  # ranked best-first, so that the latest and the best (the earliest) are both kept
        checkpointer.save(step, state.replace(step=jnp.asarray(step)), None, json.loads(config.to_json_best_effort()),
                          {"val_top1": 100.0 - step}, force=True)
    checkpointer.wait()
    checkpointer.close()
    return state


def _damage(workdir, step):
    """Truncates every array file of a checkpoint's train state, as a full disk or a killed copy would."""
    files = [p for p in (workdir / "checkpoints" / str(step) / "state").rglob("*") if p.is_file() and p.stat().st_size]
    assert files
    for path in files:
        path.write_bytes(path.read_bytes()[:7])


def _abstract(state):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def test_resume_falls_back_to_the_newest_checkpoint_that_restores(tmp_path, capsys):
    config = tiny_config("ssl")
    state = _save_stage(tmp_path, config, 11, steps=(2, 4))
    _damage(tmp_path, 4)
    checkpoints = tmp_path / "checkpoints"
    checkpointer = StageCheckpointer(checkpoints, best_metric="val_top1")
    assert checkpointer.manager.all_steps() == [2, 4]
    step, restored = checkpointer.restore_newest_good(_abstract(state), None)
    assert step == 2 and int(restored.step) == 2
    out = capsys.readouterr().out
    assert f"checkpoint step 4 in {checkpoints} cannot be restored" in out
    # Never deleted: moved aside, under a name orbax does not take for a step, and the warning says where.
    [aside] = checkpoints.glob("4.damaged-*")
    assert f"moved aside to {aside}" in out and "Resuming from step 2" in out
    assert any(p.is_file() for p in (aside / "state").rglob("*"))
    assert not (checkpoints / "4").exists() and checkpointer.manager.all_steps() == [2]
    # The resumed run trains past the damaged step: saving step 4 again works.
    config_json = json.loads(config.to_json_best_effort())
    checkpointer.save(4, restored.replace(step=jnp.asarray(4)), None, config_json, None, force=True)
    checkpointer.wait()
    assert checkpointer.manager.all_steps() == [2, 4] and aside.is_dir()
    assert int(checkpointer.restore(4, _abstract(state), None).step) == 4
    checkpointer.close()

    # None restores: nothing more is moved, and the error names the newest.
    _damage(tmp_path, 2)
    _damage(tmp_path, 4)
    checkpointer = StageCheckpointer(checkpoints, best_metric="val_top1")
    with pytest.raises(CheckpointError, match="no checkpoint in .* restores; the newest, step 4, fails"):
        checkpointer.restore_newest_good(_abstract(state), None)
    assert checkpointer.manager.all_steps() == [2, 4] and list(checkpoints.glob("*.damaged-*")) == [aside]
    checkpointer.close()


def test_a_damaged_teacher_checkpoint_is_named(tmp_path):
    _save_stage(tmp_path, tiny_config("teacher"), 11, steps=(3,))
    _damage(tmp_path, 3)
    with pytest.raises(CheckpointError, match=r"checkpoints/3 cannot be read"):
        warm_start.load_teacher(tmp_path, 11)


def test_a_student_starts_from_an_ssl_stage_of_another_number_of_classes(tmp_path):
    config = tiny_config("ssl")
    saved = _save_stage(tmp_path, config, 11, seed=3)
    student = warm_start.model_for_config(config.model, 5, "student", 0)
    head_before = np.asarray(student.head.kernel.get_value())
    warm_start.load_student(student, tmp_path)
    params = nnx.to_pure_dict(nnx.state(student, nnx.Param))
    stored = nnx.to_pure_dict(saved.params)
    np.testing.assert_array_equal(params["backbone"]["stem"]["spatial"]["kernel"],
                                  stored["backbone"]["stem"]["spatial"]["kernel"])
    np.testing.assert_array_equal(params["encoder"]["cls_token"], stored["encoder"]["cls_token"])
    # The head has 5 classes, not the stored 11: it keeps its fresh initialisation.
    assert params["head"]["kernel"].shape[-1] == 5
    np.testing.assert_array_equal(params["head"]["kernel"], head_before)
    # Another backbone is still refused, head or no head.
    wider = tiny_config("ssl", **{"model.backbone.width": 0.25})
    with pytest.raises(CheckpointError, match="does not fit this model's architecture"):
        warm_start.load_student(warm_start.model_for_config(wider.model, 5, "student", 0), tmp_path)


@pytest.mark.parametrize("field, value, named", [("data.num_frames", 16, "data.num_frames: teacher 8, this stage 16"),
                                                   ("data.crop", 24, "data.crop: teacher 32, this stage 24")])
def test_a_teacher_for_other_clips_is_refused_before_tracing(tmp_path, field, value, named):
    _save_stage(tmp_path, tiny_config("teacher"), 11)
    student = tiny_config("kd", **{field: value})
    with pytest.raises(CheckpointError, match=named):
        warm_start.load_teacher(tmp_path, 11, student)
    warm_start.load_teacher(tmp_path, 11, tiny_config("kd"))  # the same clips: accepted


def test_a_finished_stage_record_that_is_not_json_is_named(tmp_path):
    (tmp_path / "final_metrics.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="final_metrics.json: not valid JSON"):
        warm_start.stage_finished(tmp_path)


def test_a_teacher_of_another_class_count_is_refused_before_tracing(tmp_path):
    _save_stage(tmp_path, tiny_config("teacher"), 11)
    student = tiny_config("kd")
    student.dataset.name = "arid10"
    with pytest.raises(CheckpointError, match=rf"KD teacher in {tmp_path} has 11 classes \(trained on dataset "
                                              r"synthetic\), this stage's dataset arid10 has 10"):
        warm_start.load_teacher(tmp_path, 10, student)
    with pytest.raises(CheckpointError, match="has 11 classes .*, this stage has 10"):
        warm_start.load_teacher(tmp_path, 10)


def test_a_backbone_from_a_teacher_of_another_class_count_is_taken(tmp_path):
    saved = _save_stage(tmp_path, tiny_config("teacher"), 11, seed=3)
    config = tiny_config("kd")
    student = warm_start.model_for_config(config.model, 10, "student", 0)
    warm_start.load_backbone_from_teacher(student, tmp_path, 10)
    np.testing.assert_array_equal(nnx.to_pure_dict(nnx.state(student.backbone, nnx.Param))["stem"]["spatial"]["kernel"],
                                  nnx.to_pure_dict(saved.params)["backbone"]["stem"]["spatial"]["kernel"])
