"""The whole ActLumos recipe: teacher, SSL student, KD student, and the Table-5 summary."""

from __future__ import annotations

from pathlib import Path

import ml_collections
from absl import logging

from actlumos_jax.train.loop import StageResult, run_stage
from actlumos_jax.train.warm_start import DONE_FILE, stage_finished
from data_pipelines.bad_input import InputError

STAGE_DIRS = {"teacher": "teacher", "ssl": "ssl_student", "ssl_only": "ssl_only_student", "kd": "kd_student",
              "kd_only": "kd_only_student"}
# The key that points the KD stage at a prerequisite trained elsewhere.
WORKDIR_KEYS = {"teacher": "kd.teacher_workdir", "ssl": "init.student_workdir"}


def _say(message: str) -> None:
    logging.info(message)
    print(message, flush=True)


def run_kd_pipeline(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, StageResult]:
    """Runs the KD stage, training its missing prerequisites first, and the comparison students."""
    workdir = Path(workdir)
    dirs = {k: workdir / v for k, v in STAGE_DIRS.items()}
    results: dict[str, StageResult] = {}

    teacher_dir = Path(config.kd.teacher_workdir) if config.kd.teacher_workdir else dirs["teacher"]
    student_init = Path(config.init.student_workdir) if config.init.student_workdir else dirs["ssl"]
    prerequisites = [("teacher", config.prerequisites.teacher, teacher_dir), ("ssl", config.prerequisites.ssl, student_init)]
    for name, stage_config, stage_dir in prerequisites:
        if name == "ssl" and config.pipeline.student_backbone_from_teacher:
            stage_config = ml_collections.ConfigDict(stage_config.to_dict())
            stage_config.init.backbone_from_teacher = str(teacher_dir)
        if stage_finished(stage_dir) is None:
            if not config.pipeline.train_prerequisites:
                raise InputError(
                    f"the KD stage needs a finished {name} stage in {stage_dir} (no {DONE_FILE} there), and "
                    "config.pipeline.train_prerequisites=False forbids training it here: drop "
                    "--config.pipeline.train_prerequisites=False to train it first, or point "
                    f"--config.{WORKDIR_KEYS[name]} at the workdir of a finished {name} stage")
            _say(f"[pipeline] no finished {name} stage in {stage_dir}: training it first")
            if name == "ssl" and config.pipeline.student_backbone_from_teacher:
                _say(f"[pipeline] the SSL student's backbone starts from the teacher's ({teacher_dir})")
        results[name] = run_stage(stage_config, stage_dir)

    def student(stage_dir, kd_weight, from_ssl=True):
        c = ml_collections.ConfigDict(config.to_dict())
        c.kd.teacher_workdir = str(teacher_dir)
        c.loss.kd_weight = kd_weight
        if from_ssl:
            c.init.student_workdir = str(student_init)
        elif config.pipeline.student_backbone_from_teacher:  # the same backbone start as the SSL student's
            c.init.backbone_from_teacher = str(teacher_dir)
        return run_stage(c, stage_dir)

    if config.pipeline.ssl_only_baseline:
        _say("[pipeline] fine-tuning the SSL student with cross-entropy only (the SSL-only row)")
        results["ssl_only"] = student(dirs["ssl_only"], 0.0)
    if config.pipeline.kd_only_baseline:
        _say("[pipeline] distilling the teacher into a student without SSL pretraining (the KD-only row)")
        results["kd_only"] = student(dirs["kd_only"], config.loss.kd_weight, from_ssl=False)
    _say("[pipeline] distilling the teacher into the SSL student (CE + KD)")
    results["kd"] = student(dirs["kd"], config.loss.kd_weight)
    return results


def summary_table(results: dict[str, StageResult], dataset: str, protocol: str = "") -> str:
    """The paper's Table 5 layout: model, parameters, top-1 / top-5 on the test split."""
    lines = [f"Results on {dataset} (test split{'; ' + protocol if protocol else ''})",
             f"| {'Model':<40} | {'Params (M)':>10} | {'Top-1':>6} | {'Top-5':>6} |",
             f"|{'-' * 42}|{'-' * 12}|{'-' * 8}|{'-' * 8}|"]
    for key in ("teacher", "ssl_only", "kd_only", "kd"):
        if key in results:
            r = results[key]
            lines.append(f"| {r.title:<40} | {r.parameters / 1e6:>10.2f} | "
                         f"{r.metrics.get('test_top1', float('nan')):>6.2f} | "
                         f"{r.metrics.get('test_top5', float('nan')):>6.2f} |")
    return "\n".join(lines)
