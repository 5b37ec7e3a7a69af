"""What a training stage is: the one object that owns a stage's whole contract.

A ``Stage`` says which model it trains, which loader feeds it and which batch
entries its step reads, how a batch becomes a training loss, which masked sums
evaluation returns, which metric picks its checkpoint, and what its summary row
is called. ``steps.py`` and ``loop.py`` only ever call these; they never ask
which stage they are running. Adding a stage is one new module in this package
(a ``Stage`` subclass with a ``name``), which registers itself on import.

Batches carry uint8 clips; scaling, enhancement and normalisation run inside
the jitted step, so the host ships 4x fewer bytes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from actlumos_jax import enhance, losses
from data_pipelines import transforms

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]

REGISTRY: dict[str, type["Stage"]] = {}


class Stage:
    """One stage of ActLumos; subclasses set the class attributes and ``loss``."""

    name: ClassVar[str]
    model_kind: ClassVar[str]  # "teacher" or "student": what ``build_model`` builds
    batch_keys: ClassVar[tuple[str, ...]] = ("video", "label", "mask")
    eval_loader_mode: ClassVar[str] = "supervised"
    # The validation metric that picks the checkpoint, and whether larger is better.
    selection_metric: ClassVar[tuple[str, str]] = ("val_top1", "max")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls

    def __init__(self, config: ml_collections.ConfigDict, teacher_config: ml_collections.ConfigDict | None = None):
        self.config = config
        self.teacher_config = teacher_config
        self.dtype = jnp.dtype(config.model.dtype)

    # ----------------------------------------------------------------- data

    def train_loader_mode(self) -> str:
        return "supervised"

    def training_source(self, train: Any, test: Any) -> Any:
        """The clips the stage trains on (SSL may pool unlabeled test clips in)."""
        return train

    @property
    def needs_teacher(self) -> bool:
        return False

    # ------------------------------------------------------------- the step

    def loss(self, model: nnx.Module, batch: Batch, teacher: nnx.Module | None) -> tuple[jax.Array, Metrics]:
        """(model in train mode, batch, frozen teacher or None) -> (scalar loss, metrics)."""
        raise NotImplementedError

    def logits(self, model: nnx.Module, batch: Batch) -> jax.Array:
        """Class logits of the model in evaluation mode."""
        raise NotImplementedError

    def eval_sums(self, model: nnx.Module, batch: Batch, teacher: nnx.Module | None) -> dict[str, jax.Array]:
        """Sums over the valid (mask=True) clips, so padded batches give exact means."""
        mask = valid_mask(batch)
        count = mask.sum().astype(jnp.float32)
        logits, labels = self.logits(model, batch), batch["label"]
        return {
            "loss_sum": losses.cross_entropy(logits, labels, mask=mask) * count,
            "top1_correct": losses.topk_correct(logits, labels, 1, mask=mask),
            "top5_correct": losses.topk_correct(logits, labels, min(5, logits.shape[-1]), mask=mask),
            "count": count,
        }

    # -------------------------------------------------------------- reports

    def row_title(self) -> str:
        """The stage's row in a results table, naming what was really trained."""
        raise NotImplementedError


def make_stage(config: ml_collections.ConfigDict, teacher_config: ml_collections.ConfigDict | None = None) -> Stage:
    if config.stage not in REGISTRY:
        raise ValueError(f"config.stage must be one of {tuple(REGISTRY)}, got {config.stage!r}")
    return REGISTRY[config.stage](config, teacher_config)


# ------------------------------------------------------------------ inputs


def model_input(video_uint8: jax.Array, dtype: Any) -> jax.Array:
    """uint8 clips -> the IG-65M input normalisation, in the compute dtype."""
    return transforms.normalize(video_uint8, dtype)


def teacher_streams(video_uint8: jax.Array, config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
    """Dark and enhanced inputs of the teacher, normalised, from the same uint8 crop."""
    dtype = jnp.dtype(config.model.dtype)
    dark01 = transforms.to_unit_range(video_uint8, jnp.float32)
    enhanced01 = enhance.enhance(dark01, **config.enhance.to_dict())
    return transforms.standardize(dark01, dtype), transforms.standardize(enhanced01, dtype)


def valid_mask(batch: Batch) -> jax.Array:
    if "mask" in batch:
        return batch["mask"].astype(bool)
    leading = next(iter(v for k, v in batch.items() if k != "label")).shape[0]
    return jnp.ones((leading,), bool)


def accuracy(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    return losses.topk_correct(logits, labels, 1, mask=mask) / jnp.maximum(mask.sum(), 1)
