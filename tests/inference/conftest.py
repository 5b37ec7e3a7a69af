"""Stage directories and a small ARID-format dataset for the inference tests.

The stages are written as ``loop.train`` writes them (``StageCheckpointer`` checkpoints
of a train state, the saved config, ``final_metrics.json`` naming the chosen step)
from freshly initialised tiny models: training one, even for a step, costs minutes of
compilation on a 2-core CPU, and inference only reads what the files hold.
"""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.train import optim, warm_start
from actlumos_jax.train.checkpointing import StageCheckpointer
from actlumos_jax.train.state import create_train_state
from tests.data.fixtures import write_synthetic_like
from tests.train.helpers import tiny_config

NUM_CLASSES = 11
# 40 frames: longer than the tiny stage's window (8 frames 4 apart span 29), so windows slide.
CLIP_FRAMES = 40


def random_model(config, kind, seed):
    """``model_for_config``'s model with NumPy-drawn weights (fan-in scaled normals, unit norms, BatchNorm
    statistics 0 / 1): initialising it eagerly compiles one XLA program per initialiser, ~1 min on 2 cores."""
    abstract = nnx.eval_shape(lambda: warm_start.model_for_config(config.model, NUM_CLASSES, kind, seed))
    graphdef, params, batch_stats, rest = nnx.split(abstract, nnx.Param, nnx.BatchStat, ...)
    rng = np.random.default_rng(seed)

    def draw(path, x):
        name = str(getattr(path[-1], "key", path[-1])) if path else ""
        if "scale" in name or name.endswith("var"):
            return np.ones(x.shape, x.dtype)
        if len(x.shape) <= 1 or "mean" in name:
            return (0.02 * rng.standard_normal(x.shape)).astype(x.dtype)
        return (rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)

    def concrete(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key(seed)
        return np.zeros(x.shape, x.dtype)

    for state in (params, batch_stats):
        nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(state)))
    return nnx.merge(graphdef, params, batch_stats, jax.tree.map(concrete, rest))


def write_stage(workdir, config, *, step=3, seed=0, finished=True, metrics=None):
    kind = "teacher" if config.stage == "teacher" else "student"
    model = random_model(config, kind, seed)
    _, state = create_train_state(model, optim.make_optimizer(config.optim, 10), optim.plateau_transform(config.optim))
    config_json = json.loads(config.to_json_best_effort())
    checkpointer = StageCheckpointer(workdir / "checkpoints", best_metric="val_top1", async_save=False)
    checkpointer.save(step, state.replace(step=state.step + step), None, config_json, {"val_top1": 50.0}, force=True)
    checkpointer.wait()
    checkpointer.close()
    if finished:
        record = {"stage": config.stage, "title": f"test {config.stage}", "steps": step, "selected_step": step,
                  "parameters": 0, "config": config_json,
                  "metrics": metrics or {"test_top1": 9.09, "test_top5": 45.45, "test_loss": 2.4}}
        (workdir / warm_start.DONE_FILE).write_text(json.dumps(record))
        # As reporting.MetricWriter writes it.
        (workdir / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "kind": "train", "time": 0.0, "loss": 2.5 - 0.1 * s, "accuracy": 0.1 * s}) + "\n"
            for s in range(1, step + 1)) + json.dumps({"step": step, "kind": "eval", "time": 0.0, "val_top1": 50.0,
                                                         "val_loss": 2.3}) + "\n")
    return workdir


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("arid")
    return write_synthetic_like(root, splits=(1, 2, 3), num_frames=CLIP_FRAMES, height=48, width=64)


def stage_config(stage, dataset, **overrides):
    return tiny_config(stage, **{"dataset.name": "arid10", "dataset.root": str(dataset.root), "dataset.split": 1,
                                 "loss.kd_weight": 0.0, "data.interpolation": "area", **overrides})


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory, dataset):
    return write_stage(tmp_path_factory.mktemp("kd_student"), stage_config("kd", dataset), seed=1)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, dataset):
    return write_stage(tmp_path_factory.mktemp("teacher"), stage_config("teacher", dataset))
