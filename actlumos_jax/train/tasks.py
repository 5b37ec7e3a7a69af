"""The three ActLumos stages as tasks: what goes into the model and which loss comes out.

The stages share every step function in ``steps.py``; a task only says how
a batch becomes a loss (training) and logits (evaluation).
  teacher   dark + on-device retinex -> Teacher; CE + lambda * SupCon (eq. 4)
  ssl       fast and slow dark views -> Student projection; InfoNCE (eq. 7)
  kd        dark -> Student, dark + retinex -> frozen Teacher; CE + KD (eqs. 8-9)
Batches carry uint8 clips; scaling, enhancement and normalisation run here,
inside the jitted step, so the host ships 4x fewer bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from actlumos_jax import enhance, losses
from data_pipelines import transforms

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
STAGES = ("teacher", "ssl", "kd")


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    model_kind: str  # which model the stage trains: "teacher" or "student"
    # (model, batch, teacher or None) -> (scalar loss, metrics); model in train mode.
    loss: Callable[[nnx.Module, Batch, nnx.Module | None], tuple[jax.Array, Metrics]]
    # (model, batch, teacher or None) -> logits; model in eval mode. None: no classifier (SSL).
    logits: Callable[[nnx.Module, Batch, nnx.Module | None], jax.Array] | None
    needs_teacher: bool = False


def _to_unit(video_uint8: jax.Array, dtype) -> jax.Array:
    return transforms.to_unit_range(video_uint8, jnp.float32)


def _standardize(x01: jax.Array, dtype) -> jax.Array:
    """[0, 1] pixels -> the IG-65M input normalisation, in the compute dtype."""
    mean = jnp.asarray(transforms.IG65M_MEAN, jnp.float32)
    std = jnp.asarray(transforms.IG65M_STD, jnp.float32)
    return ((x01 - mean) / std).astype(dtype)


def _valid(batch: Batch) -> jax.Array:
    if "mask" in batch:
        return batch["mask"].astype(bool)
    leading = next(iter(v for k, v in batch.items() if k != "label")).shape[0]
    return jnp.ones((leading,), bool)


def _accuracy(logits, labels, mask) -> jax.Array:
    return losses.topk_correct(logits, labels, 1, mask=mask) / jnp.maximum(mask.sum(), 1)


def teacher_streams(video_uint8: jax.Array, config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
    """Dark and retinex inputs of the teacher, normalised, from the same uint8 crop."""
    dtype = jnp.dtype(config.model.dtype)
    dark01 = _to_unit(video_uint8, dtype)
    retinex01 = enhance.enhance(dark01, **config.enhance.to_dict())
    return _standardize(dark01, dtype), _standardize(retinex01, dtype)


def make_task(config: ml_collections.ConfigDict, teacher_config: ml_collections.ConfigDict | None = None) -> Task:
    """``teacher_config``: the KD teacher's own saved config; its inputs are prepared (enhanced,
    cast) as the teacher was trained, whatever this stage's ``enhance`` says."""
    stage, loss_cfg = config.stage, config.loss
    dtype = jnp.dtype(config.model.dtype)
    teacher_input_config = teacher_config if teacher_config is not None else config

    def streams(batch: Batch):
        return teacher_streams(batch["video"], config)

    def teacher_logits(model, batch, _):
        return model(*streams(batch)).logits

    def student_logits(model, batch, _):
        return model(_standardize(_to_unit(batch["video"], dtype), dtype)).logits

    if stage == "teacher":
        def teacher_loss(model, batch, _):
            mask, labels = _valid(batch), batch["label"]
            out = model(*streams(batch))
            ce = losses.cross_entropy(out.logits, labels, mask=mask)
            # Each clip is seen twice (dark and retinex view): 2B vectors for SupCon;
            # the single-stream ablations have one view.
            views = [e for e in (out.embed_dark, out.embed_retinex) if e is not None]
            supcon = losses.supcon(
                jnp.concatenate(views), jnp.concatenate([labels] * len(views)),
                temperature=loss_cfg.supcon_temperature, mask=jnp.concatenate([mask] * len(views)),
            )
            metrics = {"ce": ce, "supcon": supcon, "accuracy": _accuracy(out.logits, labels, mask)}
            if out.gate_weights is not None:
                metrics["gate_retinex"] = jnp.mean(out.gate_weights[..., 1])
            return loss_cfg.ce_weight * ce + loss_cfg.supcon_weight * supcon, metrics

        return Task("teacher", "teacher", teacher_loss, teacher_logits)

    if stage == "ssl":
        def ssl_loss(model, batch, _):
            fast = model(_standardize(_to_unit(batch["fast"], dtype), dtype))
            slow = model(_standardize(_to_unit(batch["slow"], dtype), dtype))
            nce = losses.info_nce(
                fast.projection, slow.projection, temperature=loss_cfg.info_nce_temperature,
                symmetric=loss_cfg.info_nce_symmetric, mask=_valid(batch),
            )
            return nce, {"info_nce": nce}

        return Task("ssl", "student", ssl_loss, None)

    if stage == "kd":
        def kd_loss(model, batch, teacher):
            mask, labels = _valid(batch), batch["label"]
            out = model(_standardize(_to_unit(batch["video"], dtype), dtype))
            ce = losses.cross_entropy(out.logits, labels, mask=mask)
            metrics = {"ce": ce, "accuracy": _accuracy(out.logits, labels, mask)}
            loss = loss_cfg.ce_weight * ce
            if teacher is not None:
                teacher_in = teacher_streams(batch["video"], teacher_input_config)
                teacher_out = jax.lax.stop_gradient(teacher(*teacher_in).logits)
                kd = losses.distillation(out.logits, teacher_out, temperature=loss_cfg.kd_temperature, mask=mask)
                metrics["kd"] = kd
                loss = loss + loss_cfg.kd_weight * kd
            return loss, metrics

        return Task("kd", "student", kd_loss, student_logits, needs_teacher=loss_cfg.kd_weight > 0)

    raise ValueError(f"config.stage must be one of {STAGES}, got {stage!r}")
