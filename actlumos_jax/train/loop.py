"""Running one stage: ``build`` it (model, state, shardings, loaders, jitted steps), then ``train``.

The same code runs every stage; what differs lives in the stage's ``Stage``.
Checkpoints are chosen, and the plateau schedule driven, on the validation
split carved from the training clips. The test split is scored once, at the
chosen checkpoint (``eval.select``: ``best`` on validation, or ``last``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from actlumos_jax.checkpoint_compat import CheckpointError
from actlumos_jax.models import inference_parameter_count
from actlumos_jax.train import checkpointing, fingerprint, input_pipeline, optim, parallel, reporting, steps
from actlumos_jax.train.stages import Stage, make_stage
from actlumos_jax.train.state import FrozenModel, TrainState, create_train_state
from actlumos_jax.train.warm_start import (DONE_FILE, initialise, load_teacher, model_for_config,
                                           stage_finished)
from data_pipelines.bad_input import InputError
from data_pipelines.device_prefetch import device_prefetch


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
    title: str = ""


@dataclasses.dataclass
class StageRun:
    """Everything one stage's loop needs, built once by ``build``."""

    config: ml_collections.ConfigDict
    workdir: Path
    stage: Stage
    data: input_pipeline.StageData
    state: TrainState
    state_sharding: Any
    batch_sharding: Any
    train_step: Callable
    eval_step: Callable
    plateau_step: Callable
    teacher_vars: FrozenModel | None
    train_loader: Any
    total_steps: int
    checkpointer: checkpointing.StageCheckpointer
    parameters: int

    @property
    def steps_per_epoch(self) -> int:
        return self.train_loader.steps_per_epoch


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


def _config_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort())


def run_stage(config: ml_collections.ConfigDict, workdir: str | Path) -> StageResult:
    """Trains one stage to completion in ``workdir``, resuming if it holds a checkpoint;
    a finished stage is reused only if it was trained with the same config."""
    workdir = Path(workdir)
    done = stage_finished(workdir)
    if done is not None:
        if done["stage"] != config.stage:
            raise CheckpointError(f"{workdir} was written by stage {done['stage']!r}, not by a {config.stage}")
        if "config" in done:
            fingerprint.check_same(str(workdir), done["config"], _config_json(config), "a finished stage")
        else:
            logging.warning("%s records no config (written by an older version); reusing it unchecked", workdir)
        return StageResult(done["stage"], workdir, done["metrics"], done["parameters"],
                           done.get("title") or make_stage(config).row_title())
    return train(build(config, workdir))


def build(config: ml_collections.ConfigDict, workdir: Path) -> StageRun:
    """The stage's model, sharded state, loaders, jitted steps and checkpointer."""
    stage = make_stage(config)
    mesh = parallel.make_mesh(config.mesh.num_devices)
    batch_shard, repl = parallel.batch_sharding(mesh), parallel.replicated(mesh)
    if config.train.batch_size % mesh.shape[parallel.DATA_AXIS]:
        raise InputError(f"config.train.batch_size={config.train.batch_size} is not divisible by the "
                         f"{mesh.shape[parallel.DATA_AXIS]} devices of the data axis")

    data = input_pipeline.read_stage_data(config)
    num_classes = data.info.num_classes
    model = model_for_config(config.model, num_classes, stage.model_kind, config.seed)
    parameters = inference_parameter_count(model)
    initialise(model, config, num_classes)

    teacher_graphdef = teacher_vars = None
    if stage.needs_teacher:
        teacher_graphdef, teacher_vars, teacher_config = load_teacher(config.kd.teacher_workdir, num_classes, config)
        teacher_vars = parallel.place(teacher_vars, repl)
        stage = make_stage(config, ml_collections.ConfigDict(teacher_config))

    train_source = stage.training_source(data.train, data.test)
    train_loader = input_pipeline.make_train_loader(config, train_source, data.info, stage.train_loader_mode())
    if train_loader.steps_per_epoch == 0:
        raise InputError(f"{len(train_source)} training clips cannot fill one batch of {config.train.batch_size}")
    total_steps = config.train.num_steps or config.train.epochs * train_loader.steps_per_epoch
    tx, plateau_tx = optim.make_optimizer(config.optim, total_steps), optim.plateau_transform(config.optim)
    graphdef, state = create_train_state(model, tx, plateau_tx)
    del model
    state_shard = parallel.sharding_from_rules(state, mesh, [tuple(r) for r in config.mesh.rules])
    state = parallel.place(state, state_shard)

    lr_fn = lambda step, plateau: optim.current_learning_rate(config.optim, total_steps, step, plateau)
    train_fn, eval_fn = steps.jit_steps(
        steps.make_train_step(graphdef, tx, stage, lr_fn, teacher_graphdef),
        steps.make_eval_step(graphdef, stage, teacher_graphdef),
        state_sharding=state_shard, batch_sharding=batch_shard, teacher_sharding=repl, replicated=repl,
    )
    plateau_fn = jax.jit(steps.make_plateau_step(plateau_tx), donate_argnums=(0,))
    metric, mode = stage.selection_metric
    checkpointer = checkpointing.StageCheckpointer(
        workdir / "checkpoints", best_metric=metric, best_mode=mode,
        keep_best=config.checkpoint.keep_best, async_save=config.checkpoint.async_save)
    return StageRun(config, workdir, stage, data, state, state_shard, batch_shard, train_fn, eval_fn, plateau_fn,
                    teacher_vars, train_loader, total_steps, checkpointer, parameters)


def evaluate(run: StageRun, state: TrainState, source: Any, prefix: str) -> dict:
    """The stage's metrics on every clip of ``source``, keyed ``<prefix>_loss``, ``<prefix>_top1``, ..."""
    sums: dict[str, float] = {}
    skipped = 0
    loader = input_pipeline.make_eval_loader(run.config, source, run.data.info, run.stage.eval_loader_mode)
    iterator = iter(loader)
    batches = device_prefetch(iterator, run.batch_sharding)
    try:
        for batch in batches:
            inputs, n_skipped = input_pipeline.step_inputs(batch, run.stage.batch_keys)
            skipped += n_skipped
            for k, v in jax.device_get(run.eval_step(state, inputs, run.teacher_vars)).items():
                sums[k] = sums.get(k, 0.0) + float(v)
    finally:
        batches.close()
        _close_iterator(iterator)  # its grain workers, if any, stop now (see ``train``)
    count = max(sums.pop("count", 0.0), 1.0)
    metrics = {f"{prefix}_loss": sums["loss_sum"] / count, f"{prefix}_clips": count}
    if "top1_correct" in sums:
        metrics[f"{prefix}_top1"] = 100 * sums["top1_correct"] / count
        metrics[f"{prefix}_top5"] = 100 * sums["top5_correct"] / count
    if skipped:
        metrics[f"{prefix}_skipped"] = skipped
    return metrics


def _close_iterator(iterator) -> None:
    """Closes a grain iterator (and its worker processes); a failure to close is logged, never raised,
    so that it cannot hide the error that stopped the run."""
    close = getattr(iterator, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as e:  # pylint: disable=broad-except
        logging.warning("closing the data iterator failed: %s", e)


def _finite_or_raise(metrics: dict, step: int, checkpoint_dir: Path, last_saved: int | None) -> None:
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"loss is {loss} at step {step}; stopping. The last good checkpoint "
            f"({'step ' + str(last_saved) if last_saved is not None else 'none yet'}) in {checkpoint_dir} is intact. "
            "Lower the learning rate, check the input data, or use float32 compute.")


def _resume(run: StageRun, loader_iter, config_json: dict) -> tuple[int, TrainState]:
    """The step to start from and the state there: the newest checkpoint that restores, or step 0.
    A checkpoint written under another config is never resumed."""
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            run.state, run.state_sharding)
    restored = run.checkpointer.restore_newest_good(abstract, loader_iter)
    if restored is None:
        return 0, run.state
    step, state = restored
    stored = checkpointing.read_json_item(run.checkpointer.directory, step, "config")
    fingerprint.check_same(str(run.checkpointer.directory / str(step)), stored, config_json, "a checkpoint to resume")
    logging.info("resumed %s from step %d", run.config.stage, step)
    return step, state


def train(run: StageRun) -> StageResult:
    """The loop: train, validate and checkpoint; then score the chosen checkpoint on the test split once."""
    config, stage, ckpt = run.config, run.stage, run.checkpointer
    config_json = _config_json(config)
    # Whatever stops the run, its data iterators are closed here: grain's worker processes stop while
    # the interpreter is whole, not in an exit-time finalizer that races their shutdown (and prints a
    # traceback after the error message).
    with contextlib.ExitStack() as cleanup:
        loader_iter = iter(run.train_loader)
        cleanup.callback(_close_iterator, loader_iter)
        start, state = _resume(run, loader_iter, config_json)
        train_iter = device_prefetch(loader_iter, run.batch_sharding, size=2)
        cleanup.callback(train_iter.close)  # its thread stops pulling before loader_iter closes
        writer = reporting.MetricWriter(run.workdir)
        cleanup.callback(writer.close)
        progress = reporting.Progress(run.total_steps, start, config.train.batch_size, desc=config.stage)
        cleanup.callback(progress.close)
        eval_every = config.eval.every_epochs * run.steps_per_epoch
        last_saved, pending, val_metrics, train_skipped = (start or None), None, {}, 0
        with _TermFlag() as term:
            for step in range(start, run.total_steps):
                batch, n_skipped = input_pipeline.step_inputs(next(train_iter), stage.batch_keys)
                train_skipped += n_skipped
                state, metrics = run.train_step(state, batch, run.teacher_vars)
                if pending is not None:  # one step behind, so the host never stalls the device
                    _finite_or_raise(pending, step - 1, ckpt.directory, last_saved)
                pending = metrics = jax.device_get(metrics)
                progress.update(metrics)
                done_steps = step + 1
                if done_steps % config.log_every_steps == 0:
                    writer.write(done_steps, "train", metrics)
                at_eval = run.data.val is not None and (done_steps % eval_every == 0 or done_steps == run.total_steps)
                if at_eval:
                    val_metrics = evaluate(run, state, run.data.val, "val")
                    state = run.plateau_step(state, jnp.asarray(val_metrics["val_loss"], jnp.float32))
                    writer.write(done_steps, "eval", val_metrics)
                    progress.write(f"[{config.stage}] step {done_steps}: "
                                   + ", ".join(f"{k}={v:.4g}" for k, v in val_metrics.items()))
                if at_eval or done_steps % config.checkpoint.every_steps == 0 or term.raised \
                        or done_steps == run.total_steps:
                    _finite_or_raise(metrics, step, ckpt.directory, last_saved)
                    pending = None
                    if done_steps % run.steps_per_epoch == 0 and train_skipped:
                        progress.write(f"[{config.stage}] epoch {done_steps // run.steps_per_epoch}: "
                                       f"skipped {train_skipped} unreadable clips so far")
                    ckpt.save(done_steps, state, input_pipeline.ConsumedState(train_iter), config_json,
                              val_metrics if at_eval else None, force=True)
                    last_saved = done_steps
                if term.raised:
                    ckpt.wait()
                    raise Preempted(f"SIGTERM: saved step {done_steps} in {ckpt.directory}; rerun to resume")
        ckpt.wait()

    try:
        chosen, state = _chosen_state(run, state)
    finally:
        ckpt.close()
    result = {"stage": config.stage, "title": stage.row_title(), "steps": run.total_steps,
              "selected_step": chosen, "protocol": protocol(config, stage), "parameters": run.parameters,
              "train_skipped": train_skipped, "config": config_json}
    if run.data.val is not None:
        result["val"] = _val_metrics_at(ckpt.directory, chosen) or evaluate(run, state, run.data.val, "val")
    metrics = evaluate(run, state, run.data.test, "test")
    result["metrics"] = metrics
    if jax.process_index() == 0:
        (run.workdir / DONE_FILE).write_text(json.dumps(result, indent=2))
    return StageResult(config.stage, run.workdir, metrics, run.parameters, stage.row_title())


def protocol(config: ml_collections.ConfigDict, stage: Stage) -> str:
    """One line naming how the reported checkpoint was chosen."""
    ds = config.dataset
    if ds.val_fraction <= 0:
        return "last checkpoint; no validation split; test split scored once"
    how = f"best {stage.selection_metric[0]}" if config.eval.select == "best" else "last checkpoint"
    return (f"{how} on {ds.val_fraction:.0%} of the training actors (seed {ds.val_seed}); "
            "test split scored once, at that checkpoint")


def _chosen_state(run: StageRun, state: TrainState) -> tuple[int, TrainState]:
    """The checkpoint ``eval.select`` picks, and its train state (the current one when it is the last)."""
    if run.config.eval.select == "last" or run.data.val is None:
        return run.total_steps, state
    metric, mode = run.stage.selection_metric
    step = checkpointing.chosen_step(run.checkpointer.directory, metric, mode)
    if step is None or step == run.total_steps:
        return run.total_steps, state
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, run.state_sharding)
    return step, run.checkpointer.restore(step, abstract, None)


def _val_metrics_at(directory: Path, step: int) -> dict:
    try:
        return {k: v for k, v in checkpointing.read_json_item(directory, step, "metrics").items()
                if k.startswith("val_")}
    except Exception:  # pylint: disable=broad-except  # not kept: measure again
        return {}
