"""python main.py --config=configs/kd_student.py end to end: prerequisites, Table 5, teacher checks."""

import json

import ml_collections
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.train import checkpointing, warm_start
from actlumos_jax.train.stages import make_stage
from configs import teacher as teacher_configs
from tests.train.main_runs import assert_trees_equal, main_cmd, run


# The tiny preset's 2 training actors leave 1 after the validation carve: one clip per class, so the
# teacher's class-balanced batches take 1 clip per class (its dark and enhanced views are SupCon's pair).
PIPELINE_STEPS = ["--config.train.num_steps=2", "--config.prerequisites.teacher.train.num_steps=2",
                  "--config.prerequisites.ssl.train.num_steps=2", "--config.prerequisites.teacher.train.clips_per_class=1",
                  "--config.prerequisites.teacher.train.batch_size=8", "--config.prerequisites.ssl.train.batch_size=8"]


@pytest.fixture(scope="module")
def pipeline(env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    proc = run(main_cmd("kd_student.py", workdir, *PIPELINE_STEPS), env, timeout=1200)
    return workdir, proc


def test_kd_pipeline_trains_missing_prerequisites_and_prints_table_5(pipeline):
    workdir, proc = pipeline
    assert "no finished teacher stage" in proc.stdout and "no finished ssl stage" in proc.stdout
    results = {}
    for stage in ("teacher", "ssl_student", "ssl_only_student", "kd_student"):
        results[stage] = json.loads((workdir / stage / "final_metrics.json").read_text())
        assert results[stage]["steps"] == 2
    table = proc.stdout[proc.stdout.index("Results on synthetic"):]
    assert "best val_top1 on 20% of the training actors" in table.splitlines()[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    # The tests' teacher enhances with gamma (cheap), and its row says so.
    assert [r.split("|")[1].strip() for r in rows] == [
        "Teacher: DFF + SupCon (dark + gamma)", "Student: SSL only (dark)", "Student: SSL + KD (dark)"]
    for row, stage in zip(rows, ("teacher", "ssl_only_student", "kd_student")):
        params, top1, top5 = (float(x) for x in row.split("|")[2:5])
        metrics = results[stage]["metrics"]
        # The table prints the test split's figures of the stage's record, to 2 decimals.
        assert (top1, top5) == (round(metrics["test_top1"], 2), round(metrics["test_top5"], 2))
        assert params == round(results[stage]["parameters"] / 1e6, 2)
        assert metrics["test_clips"] == 11  # the tiny preset's test split (1 actor), scored whole
        assert results[stage]["val"]["val_clips"] == 11  # 1 of its 2 training actors
    kd = json.loads((workdir / "kd_student" / "final_metrics.json").read_text())
    teacher = json.loads((workdir / "teacher" / "final_metrics.json").read_text())
    # The paper's teacher is the student's architecture plus the DFF gate: Linear(2C -> hidden) and
    # Linear(hidden -> 2) on C = 64 channels (width 1/8), hidden as the teacher was built.
    directory = workdir / "teacher" / "checkpoints"
    saved = checkpointing.read_json_item(directory, checkpointing.chosen_step(directory), "config")
    assert saved["model"]["fusion"] == "dff_temporal" and saved["loss"]["supcon_weight"] == 0.1
    hidden = saved["model"]["fusion_hidden"]
    assert teacher["parameters"] - kd["parameters"] == (2 * 64 * hidden + hidden) + (hidden * 2 + 2)


def test_kd_refuses_a_teacher_workdir_that_holds_another_stage(pipeline, env, tmp_path):
    workdir, _ = pipeline
    proc = run(main_cmd("kd_student.py", tmp_path / "kd", *PIPELINE_STEPS,
                        f"--config.kd.teacher_workdir={workdir / 'ssl_student'}",
                        f"--config.init.student_workdir={workdir / 'ssl_student'}"), env, check=False)
    assert proc.returncode != 0
    assert "was written by stage 'ssl', not by a teacher" in proc.stderr, proc.stderr[-3000:]


def test_the_ssl_student_backbone_starts_from_the_teacher(pipeline):
    workdir, proc = pipeline
    assert "the SSL student's backbone starts from the teacher's" in proc.stdout
    ssl_dir = workdir / "ssl_student" / "checkpoints"
    saved = ml_collections.ConfigDict(
        checkpointing.read_json_item(ssl_dir, checkpointing.chosen_step(ssl_dir), "config"))
    assert saved.init.backbone_from_teacher == str(workdir / "teacher")
    student = warm_start.model_for_config(saved.model, 11, "student", 7)
    _, teacher, _ = warm_start.load_teacher(workdir / "teacher", 11)
    before = nnx.to_pure_dict(nnx.state(student.backbone, nnx.Param))
    warm_start.load_backbone_from_teacher(student, workdir / "teacher", 11)
    after = nnx.to_pure_dict(nnx.state(student.backbone, nnx.Param))
    assert_trees_equal(after, nnx.to_pure_dict(teacher.params)["backbone"])
    assert not np.allclose(before["stem"]["spatial"]["kernel"], after["stem"]["spatial"]["kernel"])
    assert_trees_equal(nnx.to_pure_dict(nnx.state(student.backbone, nnx.BatchStat)),
                       nnx.to_pure_dict(teacher.batch_stats)["backbone"])
    saved.model.backbone.width = 0.25
    wider = nnx.eval_shape(lambda: warm_start.model_for_config(saved.model, 11, "student", 7))
    with pytest.raises(checkpointing.CheckpointError, match="does not fit this model's backbone"):
        warm_start.load_backbone_from_teacher(wider, workdir / "teacher", 11)


def test_teacher_checkpoint_of_another_architecture_is_refused(pipeline):
    workdir, _ = pipeline
    directory = workdir / "teacher" / "checkpoints"
    step = checkpointing.chosen_step(directory)  # the KD teacher is the final checkpoint
    saved = ml_collections.ConfigDict(checkpointing.read_json_item(directory, step, "config"))
    saved.model.backbone.width = 0.25  # the checkpoint's teacher is 0.125 wide
    wider = nnx.eval_shape(lambda: warm_start.model_for_config(saved.model, 11, "teacher", 0))
    with pytest.raises(checkpointing.CheckpointError, match=r"does not fit this model's architecture"):
        checkpointing.load_model_variables(directory, step, wider)
    saved.model.backbone.width = 0.125
    frozen = checkpointing.load_model_variables(directory, step, warm_start.model_for_config(saved.model, 11, "teacher", 0))
    _, frozen_again, teacher_config = warm_start.load_teacher(workdir / "teacher", 11)
    assert teacher_config["stage"] == "teacher"
    assert_trees_equal(nnx.to_pure_dict(frozen.params), nnx.to_pure_dict(frozen_again.params))


def test_the_teacher_row_names_the_teacher_that_was_trained():
    for size in ("paper", "tiny"):  # the CPU demo trains the paper's teacher too
        title = make_stage(teacher_configs.get_config(f"size={size}")).row_title()
        assert title == "Teacher: DFF + SupCon (dark + retinex)"
    ablation = teacher_configs.get_config("size=tiny")
    ablation.model.fusion, ablation.loss.supcon_weight = "retinex_only", 0.0
    assert make_stage(ablation).row_title() == "Teacher: one stream, CE only (retinex)"
    darklight = teacher_configs.get_config("size=tiny")
    darklight.model.fusion, darklight.enhance.method = "concat", "gamma"
    assert make_stage(darklight).row_title() == "Teacher: concat + SupCon (dark + gamma)"
