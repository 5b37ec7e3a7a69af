"""Where a stage's model starts: fresh, from IG-65M weights, from a teacher, or from another stage.

Also the frozen KD teacher. Every load checks the architecture before it
changes anything and names the checkpoint and the setting that differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
from absl import logging
from flax import nnx

from actlumos_jax.checkpoint_compat import CheckpointError
from actlumos_jax.models import build_model, load_pretrained_backbone
from actlumos_jax.train import checkpointing
from actlumos_jax.train.state import FrozenModel, frozen_from_model, model_from_state

DONE_FILE = "final_metrics.json"


def model_for_config(model_cfg: ml_collections.ConfigDict, num_classes: int, kind: str, seed: int) -> nnx.Module:
    return build_model(model_cfg, num_classes, kind=kind, rngs=nnx.Rngs(seed, dropout=seed + 1, mask=seed + 2))


def stage_finished(workdir: str | Path) -> dict | None:
    """The finished stage's record (``final_metrics.json``), or None while it is not finished."""
    path = Path(workdir) / DONE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); delete it to re-evaluate the stage") from None


def selected_step(workdir: str | Path) -> int | None:
    """The checkpoint a finished stage chose (best on validation, or its last); else its newest."""
    done = stage_finished(workdir)
    if done is not None and done.get("selected_step") is not None:
        return int(done["selected_step"])
    return checkpointing.chosen_step(Path(workdir) / "checkpoints", None)


def saved_config(workdir: str | Path, step: int) -> ml_collections.ConfigDict:
    directory = Path(workdir) / "checkpoints"
    try:
        return ml_collections.ConfigDict(checkpointing.read_json_item(directory, step, "config"))
    except CheckpointError:
        raise
    except Exception as e:  # pylint: disable=broad-except  # orbax's error for a damaged JSON item
        raise CheckpointError(f"{directory / str(step) / 'config'}: cannot read the saved config ({e})") from None


def load_teacher(teacher_workdir: str | Path, num_classes: int,
                 student_config: ml_collections.ConfigDict | None = None
                 ) -> tuple[nnx.GraphDef, FrozenModel, dict]:
    """The frozen KD teacher: the checkpoint its stage chose on its validation split
    (never on the test split), its own saved config, and variables that must fit
    that architecture. ``student_config``: the student it will teach, whose clips
    the teacher must be able to read (frames, crop, classes), checked before any tracing."""
    directory = Path(teacher_workdir) / "checkpoints"
    step = selected_step(teacher_workdir)
    if step is None:
        raise CheckpointError(f"no teacher checkpoint under {directory}")
    teacher_config = saved_config(teacher_workdir, step)
    if teacher_config.stage != "teacher":
        raise CheckpointError(
            f"{directory} step {step} was written by stage {teacher_config.stage!r}, not by a teacher")
    if student_config is not None:
        _check_teacher_reads_student_clips(teacher_workdir, teacher_config, student_config)
    _check_teacher_classes(teacher_workdir, directory, step, teacher_config, num_classes, student_config)
    model = model_for_config(teacher_config.model, num_classes, "teacher", 0)
    frozen = checkpointing.load_model_variables(directory, step, model)
    graphdef, _ = frozen_from_model(model)
    return graphdef, frozen, teacher_config.to_dict()


def _check_teacher_reads_student_clips(where, teacher: ml_collections.ConfigDict,
                                       student: ml_collections.ConfigDict) -> None:
    pairs = [("data.num_frames", teacher.data.num_frames, student.data.num_frames),
             ("data.crop", teacher.data.crop, student.data.crop)]
    problems = [f"{name}: teacher {t}, this stage {s}" for name, t, s in pairs if t != s]
    if problems:
        raise CheckpointError(
            f"the KD teacher in {where} was trained on other clips than this stage feeds it ("
            + "; ".join(problems) + "). Train a teacher with these settings, or set them to the teacher's.")


def _check_teacher_classes(where, directory: Path, step: int, teacher: ml_collections.ConfigDict, num_classes: int,
                           student: ml_collections.ConfigDict | None) -> None:
    """Refuses a teacher whose head has another number of classes than ``num_classes``
    (trained on another dataset), before any tracing and before the shape-mismatch report."""
    teacher_classes = _teacher_head_classes(directory, step)
    if teacher_classes is None or teacher_classes == num_classes:
        return
    ours = f"this stage's dataset {_dataset_name(student)}" if student is not None else "this stage"
    raise CheckpointError(
        f"the KD teacher in {where} has {teacher_classes} classes (trained on dataset {_dataset_name(teacher)}), "
        f"{ours} has {num_classes}: a teacher must be trained on the student's classes. "
        f"Train a teacher on this dataset, or set config.kd.teacher_workdir to one that was.")


def _teacher_head_classes(directory: Path, step: int) -> int | None:
    try:
        return _stored_head_classes(directory, step)
    except Exception:  # pylint: disable=broad-except  # damaged metadata: load_model_variables names the file
        return None


def _dataset_name(config: ml_collections.ConfigDict) -> str:
    return str((config.get("dataset") or {}).get("name") or "unknown")


def load_backbone_from_teacher(model: nnx.Module, teacher_workdir: str | Path, num_classes: int) -> None:
    """Copies a trained teacher's backbone (weights and BatchNorm statistics) into ``model``.

    The CPU demo's stand-in for the IG-65M initialisation the paper gives its
    students: without it, a from-scratch student does not learn from dark
    frames alone in the demo's minutes. The two backbones must be the same architecture;
    the teacher may have another number of classes, as only its backbone is used.
    """
    step = selected_step(teacher_workdir)
    teacher_classes = _teacher_head_classes(Path(teacher_workdir) / "checkpoints", step) if step is not None else None
    graphdef, frozen, _ = load_teacher(teacher_workdir, teacher_classes or num_classes)
    source = nnx.state(model_from_state(graphdef, frozen).backbone)
    target = nnx.state(model.backbone)
    shapes = lambda state: jax.tree.map(lambda x: (x.shape, x.dtype), nnx.to_pure_dict(state))
    if shapes(source) != shapes(target):
        raise CheckpointError(
            f"the teacher backbone in {teacher_workdir} does not fit this model's backbone "
            f"(config.model.backbone must match the teacher's)")
    nnx.update(model.backbone, source)


def load_student(model: nnx.Module, student_workdir: str | Path) -> None:
    """Starts ``model`` from another student stage (the SSL one): everything but a head
    of another size, which stays freshly initialised (SSL on another dataset's classes)."""
    directory = Path(student_workdir) / "checkpoints"
    step = selected_step(student_workdir)
    if step is None:
        raise CheckpointError(f"no checkpoint to initialise the student from under {directory}")
    source_config = saved_config(student_workdir, step)
    stored_classes = _stored_head_classes(directory, step)
    fresh = ("head",) if stored_classes != model.head.out_features else ()
    frozen = checkpointing.load_model_variables(directory, step, model, fresh=fresh)
    nnx.update(model, frozen.params, frozen.batch_stats)
    note = f"; head re-initialised ({stored_classes} -> {model.head.out_features} classes)" if fresh else ""
    logging.info("student initialised from %s step %d (stage %s)%s", directory, step, source_config.stage, note)


def _stored_head_classes(directory: Path, step: int) -> int | None:
    shape = checkpointing.stored_shapes(directory, step).get("params/head/bias")
    return shape[0] if shape else None


def initialise(model: nnx.Module, config: ml_collections.ConfigDict, num_classes: int) -> None:
    """Applies ``config.init``: IG-65M or teacher backbone, then optionally a whole student stage."""
    init = config.init
    if init.backbone_checkpoint and init.backbone_from_teacher:
        raise CheckpointError("set at most one of config.init.backbone_checkpoint and "
                              "config.init.backbone_from_teacher")
    if init.backbone_checkpoint:
        load_pretrained_backbone(model, init.backbone_checkpoint)
        logging.info("backbone initialised from %s", init.backbone_checkpoint)
    if init.backbone_from_teacher:
        load_backbone_from_teacher(model, init.backbone_from_teacher, num_classes)
        logging.info("backbone initialised from the teacher in %s", init.backbone_from_teacher)
    if init.student_workdir:
        load_student(model, init.student_workdir)
