"""Orbax checkpoints of a stage: train state + grain iterator state + config + metrics.

Saves are asynchronous. The latest checkpoint and the best ``keep_best`` by
the validation metric are kept. A checkpoint only becomes visible once orbax
has finalised it (it writes to a temporary directory and renames), so a run
killed mid-save resumes from the previous one. A checkpoint that is there but
does not restore (a truncated file) is moved aside to ``N.damaged-<time>`` and
the run resumes from the newest one that does.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from orbax.checkpoint import checkpoint_managers as policies

from actlumos_jax.checkpoint_compat import CheckpointError, flat_shapes, format_problems, shape_problems
from actlumos_jax.train.state import FrozenModel, TrainState, split_model

__all__ = ["CheckpointError", "StageCheckpointer", "chosen_step", "load_model_variables", "read_json_item"]


class StageCheckpointer:
    def __init__(self, directory: str | Path, *, best_metric: str, best_mode: str = "max",
                 keep_best: int = 1, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.best_metric = best_metric
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        # Checkpoints saved between evaluations have no metric. After a restart orbax reads
        # their (empty) metrics item back, so they rank last instead of raising KeyError.
        unranked = -math.inf if best_mode == "max" else math.inf
        best = policies.BestN(
            get_metric_fn=lambda metrics: float(metrics.get(best_metric, unranked)),
            # BestN sorts with sorted(reverse=...) and keeps the tail: ascending keeps the largest.
            reverse=(best_mode == "min"), n=keep_best, keep_checkpoints_without_metrics=False,
        )
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=async_save,
            preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(1), best]),
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data", "config", "metrics"),
        )

    def save(self, step: int, state: TrainState, data_iterator: Any, config_json: dict,
             metrics: dict | None, *, force: bool = False) -> bool:
        items = {
            "state": ocp.args.StandardSave(state),
            "config": ocp.args.JsonSave(config_json),
            "metrics": ocp.args.JsonSave(_jsonable(metrics or {})),
        }
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        ranking = None
        if metrics and self.best_metric in metrics:
            ranking = {self.best_metric: float(metrics[self.best_metric])}
        return self.manager.save(step, args=ocp.args.Composite(**items), metrics=ranking, force=force)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, step: int, abstract_state: TrainState, data_iterator: Any) -> TrainState:
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored.state

    def restore_newest_good(self, abstract_state: TrainState, data_iterator: Any) -> tuple[int, TrainState] | None:
        """The newest checkpoint that restores, newest first; None when there is none at all.

        A damaged checkpoint (a truncated or deleted file) is named in a warning
        and, once an older one has restored, moved aside to ``N.damaged-<time>``
        (a name orbax does not read as a step) for the user to inspect: never
        deleted, and out of the way of the run's own save of step N when it gets
        there again. When none restores, nothing is moved and a CheckpointError
        names the newest and why it failed.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        failures = []
        for step in steps:
            try:
                restored = self.restore(step, abstract_state, data_iterator)
            except Exception as e:  # pylint: disable=broad-except  # orbax raises many kinds for one bad file
                failures.append((step, _first_line(e)))
                logging.warning("checkpoint %s cannot be restored: %s", self.directory / str(step), failures[-1][1])
                print(f"WARNING: checkpoint step {step} in {self.directory} cannot be restored "
                      f"({failures[-1][1]}). Trying the one before.", flush=True)
                continue
            if failures:
                self._move_aside([s for s, _ in failures], resumed_from=step)
            return step, restored
        if failures:
            step, reason = failures[0]
            raise CheckpointError(
                f"no checkpoint in {self.directory} restores; the newest, step {step}, fails with: {reason}. "
                "Move the directory away to start this stage afresh.")
        return None

    def _move_aside(self, steps: list[int], *, resumed_from: int) -> None:
        """Renames the damaged step directories ``N`` to ``N.damaged-<time>`` (process 0; the others wait)."""
        if jax.process_index() == 0:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for step in steps:
                target, n = self.directory / f"{step}.damaged-{stamp}", 1
                while target.exists():  # damaged again within the second
                    target, n = self.directory / f"{step}.damaged-{stamp}-{n}", n + 1
                try:
                    (self.directory / str(step)).rename(target)
                except OSError as e:
                    raise CheckpointError(
                        f"checkpoint step {step} in {self.directory} cannot be restored and cannot be moved aside "
                        f"to {target} ({e.strerror or e}): move it away by hand, then rerun to resume from step "
                        f"{resumed_from}") from e
                message = (f"checkpoint step {step} in {self.directory} is damaged: moved aside to {target} "
                           f"(kept for inspection; delete it when done). Resuming from step {resumed_from}.")
                logging.warning(message)
                print(f"WARNING: {message}", flush=True)
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes(f"actlumos:damaged-moved-aside-{resumed_from}")
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _jsonable(tree: dict) -> dict:
    return json.loads(json.dumps(jax.tree.map(lambda x: np.asarray(x).tolist(), tree)))


@contextlib.contextmanager
def _reader(directory: Path, **kwargs):
    """A read-only CheckpointManager, without the warnings orbax logs for every read-only open
    (and for the items a partial restore leaves alone): a KD run opens its teacher ~10 times."""
    previous = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    manager = None
    try:
        manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True), **kwargs)
        yield manager
    finally:
        if manager is not None:
            manager.close()
        logging.set_verbosity(previous)


def read_json_item(directory: str | Path, step: int, item: str) -> dict:
    with _reader(Path(directory).absolute(), item_names=(item,)) as manager:
        return dict(manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item])


def chosen_step(directory: str | Path, metric: str | None = None, mode: str = "max") -> int | None:
    """The step with the best ``metric`` (as saved in its metrics item), or the
    latest finalised step when no checkpoint has that metric; None if empty."""
    directory = Path(directory).absolute()
    if not directory.is_dir():
        return None
    with _reader(directory) as manager:
        steps, latest = manager.all_steps(), manager.latest_step()
    scored = []
    for step in steps if metric else ():
        value = read_json_item(directory, step, "metrics").get(metric)
        if value is not None:
            scored.append((value if mode == "max" else -value, step))
    return max(scored)[1] if scored else latest


def stored_shapes(directory: str | Path, step: int) -> dict[str, tuple[int, ...]]:
    """Every tensor shape of a checkpoint's train state, keyed like ``flat_shapes``, read from its metadata."""
    with _reader(Path(directory).absolute(), item_handlers={"state": ocp.PyTreeCheckpointHandler()}) as manager:
        metadata = manager.item_metadata(step)["state"]
    return flat_shapes(metadata) if metadata is not None else {}


def load_model_variables(directory: str | Path, step: int, model: nnx.Module, *,
                         fresh: tuple[str, ...] = ()) -> FrozenModel:
    """Reads params, batch statistics and rng state of ``model``'s architecture
    from a stage checkpoint, refusing one whose shapes do not match.

    Used to freeze the KD teacher and to start a student from its SSL stage;
    the error lists every missing, extra or mis-shaped tensor. Variables under
    the top-level modules named in ``fresh`` (e.g. ``("head",)`` for another
    number of classes) are neither checked nor loaded: they keep ``model``'s values.
    """
    directory = Path(directory).absolute()
    _, params, batch_stats, rngs = split_model(model)
    try:
        with _reader(directory, item_handlers={"state": ocp.PyTreeCheckpointHandler()}) as manager:
            metadata = manager.item_metadata(step)["state"]
            if metadata is None:
                raise CheckpointError(f"{directory / str(step)} holds no train state")
            wanted = {"params": params, "batch_stats": batch_stats}
            _check_compatible(directory / str(step), metadata, wanted, fresh)
            restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), metadata)
            raw = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(restore_args=restore_args)))["state"]
    except CheckpointError:
        raise
    except Exception as e:  # pylint: disable=broad-except  # a damaged file: name it, not orbax's internals
        raise CheckpointError(f"{directory / str(step)} cannot be read ({_first_line(e)})") from e
    return FrozenModel(_fill(params, raw["params"], fresh), _fill(batch_stats, raw["batch_stats"], fresh), rngs)


def _is_fresh(name: str, fresh: tuple[str, ...]) -> bool:
    return name.split("/", 1)[0] in fresh


def _check_compatible(where: Path, metadata, wanted: dict, fresh: tuple[str, ...] = ()) -> None:
    problems = []
    for group, state in wanted.items():
        if group not in metadata:
            problems.append(f"no '{group}' in the checkpoint")
            continue
        have = {k: v for k, v in flat_shapes(metadata[group]).items() if not _is_fresh(k, fresh)}
        want = {k: v for k, v in flat_shapes(state).items() if not _is_fresh(k, fresh)}
        problems += [f"{group}/{p}" for p in shape_problems(want, have)]
    if problems:
        raise CheckpointError(format_problems(f"checkpoint {where} does not fit this model's architecture", problems))


def _fill(state: nnx.State, raw: dict, fresh: tuple[str, ...] = ()) -> nnx.State:
    """Replaces ``state``'s values by the checkpoint's (stored as ``{"value": array}`` leaves)."""
    pure = jax.tree.map(lambda x: x["value"] if isinstance(x, dict) else x, raw,
                        is_leaf=lambda x: isinstance(x, dict) and set(x) == {"value"})
    current = nnx.to_pure_dict(state)
    for name in fresh:
        if name in current:
            pure[name] = current[name]
    nnx.replace_by_pure_dict(state, pure)
    return state
