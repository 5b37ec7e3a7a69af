"""Running one stage: build, restore, train, evaluate, checkpoint; the same code for all three."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from flax import nnx

from actlumos_jax.models import build_model, inference_parameter_count, load_pretrained_backbone
from actlumos_jax.train import checkpointing, input_pipeline, optim, parallel, reporting, steps
from actlumos_jax.train.state import FrozenModel, create_train_state, frozen_from_model, model_from_state
from actlumos_jax.train.tasks import make_task
from data_pipelines.device_prefetch import device_prefetch

DONE_FILE = "final_metrics.json"


class NonFiniteLossError(RuntimeError):
    pass


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was written and the run can be resumed."""


@dataclasses.dataclass
class StageResult:
    stage: str
    workdir: Path
    metrics: dict
    parameters: int


def stage_finished(workdir: str | Path) -> dict | None:
    path = Path(workdir) / DONE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class _TermFlag:
    """Turns SIGTERM into a flag the loop checks between steps."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _model_for_config(model_cfg, num_classes, kind, seed):
    return build_model(model_cfg, num_classes, kind=kind, rngs=nnx.Rngs(seed, dropout=seed + 1, mask=seed + 2))


def load_teacher(teacher_workdir: str | Path, num_classes: int) -> tuple[nnx.GraphDef, FrozenModel, dict]:
    """The frozen KD teacher: its final checkpoint, its own config from that
    checkpoint, and variables that must fit that architecture (CheckpointError
    otherwise). The final step, not the best by validation top-1: that metric
    is measured on the test split, which must select nothing."""
    directory = Path(teacher_workdir) / "checkpoints"
    step = checkpointing.chosen_step(directory, None)
    if step is None:
        raise checkpointing.CheckpointError(f"no teacher checkpoint under {directory}")
    teacher_config = ml_collections.ConfigDict(checkpointing.read_json_item(directory, step, "config"))
    if teacher_config.stage != "teacher":
        raise checkpointing.CheckpointError(
            f"{directory} step {step} was written by stage {teacher_config.stage!r}, not by a teacher")
    model = _model_for_config(teacher_config.model, num_classes, "teacher", 0)
    frozen = checkpointing.load_model_variables(directory, step, model)
    graphdef, _ = frozen_from_model(model)
    return graphdef, frozen, teacher_config.to_dict()


def load_backbone_from_teacher(model: nnx.Module, teacher_workdir: str | Path, num_classes: int) -> None:
    """Copies a trained teacher's backbone (weights and BatchNorm statistics) into ``model``.

    The CPU demo's stand-in for the IG-65M initialisation the paper gives its
    students: without it, a from-scratch student does not learn from dark
    frames alone in the demo's minutes. The two backbones must be the same architecture.
    """
    graphdef, frozen, _ = load_teacher(teacher_workdir, num_classes)
    source = nnx.state(model_from_state(graphdef, frozen).backbone)
    target = nnx.state(model.backbone)
    shapes = lambda state: jax.tree.map(lambda x: (x.shape, x.dtype), nnx.to_pure_dict(state))
    if shapes(source) != shapes(target):
        raise checkpointing.CheckpointError(
            f"the teacher backbone in {teacher_workdir} does not fit this model's backbone "
            f"(config.model.backbone must match the teacher's)")
    nnx.update(model.backbone, source)


def _initialise(model, config, num_classes):
    init = config.init
    if init.backbone_checkpoint and init.backbone_from_teacher:
        raise ValueError("set at most one of config.init.backbone_checkpoint and config.init.backbone_from_teacher")
    if init.backbone_checkpoint:
        load_pretrained_backbone(model, init.backbone_checkpoint)
        logging.info("backbone initialised from %s", init.backbone_checkpoint)
    if init.backbone_from_teacher:
        load_backbone_from_teacher(model, init.backbone_from_teacher, num_classes)
        logging.info("backbone initialised from the teacher in %s", init.backbone_from_teacher)
    if init.student_workdir:
        directory = Path(init.student_workdir) / "checkpoints"
        step = checkpointing.chosen_step(directory, None)
        if step is None:
            raise checkpointing.CheckpointError(f"no checkpoint to initialise the student from under {directory}")
        frozen = checkpointing.load_model_variables(directory, step, model)
        nnx.update(model, frozen.params, frozen.batch_stats)
        logging.info("student initialised from %s step %d", directory, step)


def _finite_or_raise(metrics: dict, step: int, checkpoint_dir: Path, last_saved: int | None) -> None:
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"loss is {loss} at step {step}; stopping. The last good checkpoint "
            f"({'step ' + str(last_saved) if last_saved is not None else 'none yet'}) in {checkpoint_dir} is intact. "
            "Lower the learning rate, check the input data, or use float32 compute.")


def run_stage(config: ml_collections.ConfigDict, workdir: str | Path) -> StageResult:
    """Trains one stage to completion in ``workdir``, resuming if it holds a checkpoint."""
    workdir = Path(workdir)
    done = stage_finished(workdir)
    task = make_task(config)  # rebuilt below with the KD teacher's saved config once it is loaded
    mesh = parallel.make_mesh(config.mesh.num_devices)
    batch_shard, repl = parallel.batch_sharding(mesh), parallel.replicated(mesh)
    if config.train.batch_size % mesh.shape[parallel.DATA_AXIS]:
        raise ValueError(f"config.train.batch_size={config.train.batch_size} is not divisible by the "
                         f"{mesh.shape[parallel.DATA_AXIS]} devices of the data axis")

    data = input_pipeline.read_stage_data(config)
    num_classes = data.info.num_classes
    n_params = inference_parameter_count(
        nnx.eval_shape(lambda: _model_for_config(config.model, num_classes, task.model_kind, config.seed)))
    if done is not None:
        return StageResult(config.stage, workdir, done["metrics"], n_params)
    model = _model_for_config(config.model, num_classes, task.model_kind, config.seed)
    _initialise(model, config, num_classes)

    teacher_graphdef = teacher_vars = None
    if task.needs_teacher:
        teacher_graphdef, teacher_vars, teacher_config = load_teacher(config.kd.teacher_workdir, num_classes)
        teacher_vars = parallel.place(teacher_vars, repl)
        task = make_task(config, ml_collections.ConfigDict(teacher_config))

    train_loader = input_pipeline.make_train_loader(config, data)
    steps_per_epoch = train_loader.steps_per_epoch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data.train)} training clips cannot fill one batch of {config.train.batch_size}")
    total_steps = config.train.num_steps or config.train.epochs * steps_per_epoch
    tx, plateau_tx = optim.make_optimizer(config.optim, total_steps), optim.plateau_transform(config.optim)
    graphdef, state = create_train_state(model, tx, plateau_tx)
    del model
    state_shard = parallel.sharding_from_rules(state, mesh, [tuple(r) for r in config.mesh.rules])
    state = parallel.place(state, state_shard)

    lr_fn = lambda step, plateau: optim.current_learning_rate(config.optim, total_steps, step, plateau)
    train_fn, eval_fn = steps.jit_steps(
        steps.make_train_step(graphdef, tx, task, lr_fn, teacher_graphdef),
        steps.make_eval_step(graphdef, task, teacher_graphdef),
        state_sharding=state_shard, batch_sharding=batch_shard, teacher_sharding=repl, replicated=repl,
    )
    plateau_fn = jax.jit(steps.make_plateau_step(plateau_tx), donate_argnums=(0,))

    loader_iter = iter(train_loader)
    best_metric, best_mode = ("val_top1", "max") if task.logits is not None else ("val_loss", "min")
    ckpt = checkpointing.StageCheckpointer(workdir / "checkpoints", best_metric=best_metric, best_mode=best_mode,
                                           keep_best=config.checkpoint.keep_best, async_save=config.checkpoint.async_save)
    start = ckpt.latest_step() or 0
    if start:
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_shard)
        state = ckpt.restore(start, abstract, loader_iter)
        logging.info("resumed %s from step %d", config.stage, start)
    train_iter = device_prefetch(loader_iter, batch_shard, size=2)
    train_skipped = 0
    config_json = json.loads(config.to_json_best_effort())
    writer = reporting.MetricWriter(workdir)
    progress = reporting.Progress(total_steps, start, config.train.batch_size, desc=config.stage)

    def run_eval(step: int) -> dict:
        nonlocal state
        sums: dict[str, float] = {}
        eval_iter, skipped = device_prefetch(iter(input_pipeline.make_eval_loader(config, data)), batch_shard), 0
        try:
            for batch in eval_iter:
                inputs, n_skipped = input_pipeline.step_inputs(batch, config.stage)
                skipped += n_skipped
                out = jax.device_get(eval_fn(state, inputs, teacher_vars))
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
        finally:
            eval_iter.close()
        count = max(sums.pop("count", 0.0), 1.0)
        metrics = {"val_loss": sums["loss_sum"] / count, "val_clips": count}
        if "top1_correct" in sums:
            metrics.update(val_top1=100 * sums["top1_correct"] / count, val_top5=100 * sums["top5_correct"] / count)
        if skipped:
            metrics["val_skipped"] = skipped
        state = plateau_fn(state, jnp.asarray(metrics["val_loss"], jnp.float32))
        writer.write(step, "eval", metrics)
        progress.write(f"[{config.stage}] step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        return metrics

    last_saved, pending, eval_metrics = (start or None), None, {}
    eval_every = config.eval.every_epochs * steps_per_epoch
    try:
        with _TermFlag() as term:
            for step in range(start, total_steps):
                batch, n_skipped = input_pipeline.step_inputs(next(train_iter), config.stage)
                train_skipped += n_skipped
                state, metrics = train_fn(state, batch, teacher_vars)
                if pending is not None:  # one step behind, so the host never stalls the device
                    _finite_or_raise(pending, step - 1, ckpt.directory, last_saved)
                pending = metrics = jax.device_get(metrics)
                progress.update(metrics)
                done_steps = step + 1
                if done_steps % config.log_every_steps == 0:
                    writer.write(done_steps, "train", metrics)
                at_eval = done_steps % eval_every == 0 or done_steps == total_steps
                if at_eval or done_steps % config.checkpoint.every_steps == 0 or term.raised:
                    _finite_or_raise(metrics, step, ckpt.directory, last_saved)
                    pending = None
                    if at_eval:
                        eval_metrics = run_eval(done_steps)
                    if done_steps % steps_per_epoch == 0 and train_skipped:
                        progress.write(f"[{config.stage}] epoch {done_steps // steps_per_epoch}: "
                                       f"skipped {train_skipped} unreadable clips so far")
                    ckpt.save(done_steps, state, input_pipeline.ConsumedState(train_iter), config_json,
                              eval_metrics if at_eval else None, force=True)
                    last_saved = done_steps
                if term.raised:
                    ckpt.wait()
                    raise Preempted(f"SIGTERM: saved step {done_steps} in {ckpt.directory}; rerun to resume")
            if pending is not None:
                _finite_or_raise(pending, total_steps - 1, ckpt.directory, last_saved)
        ckpt.wait()
    finally:
        progress.close()
        train_iter.close()
        writer.close()
        ckpt.close()
    if not eval_metrics:  # resumed at the very end
        eval_metrics = run_eval(total_steps)
    result = {"stage": config.stage, "steps": total_steps, "metrics": eval_metrics, "parameters": n_params,
              "train_skipped": train_skipped}
    if jax.process_index() == 0:
        (workdir / DONE_FILE).write_text(json.dumps(result, indent=2))
    return StageResult(config.stage, workdir, eval_metrics, n_params)
