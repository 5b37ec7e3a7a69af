"""Optimizer, learning-rate schedules and gradient accumulation, all from optax."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ("constant", "warmup_cosine", "plateau")


def steps_per_update(cfg: ml_collections.ConfigDict) -> int:
    """Training steps per optimizer update: ``grad_accum_steps`` batches are averaged into one."""
    accum = int(cfg.grad_accum_steps)
    if accum < 1:
        raise ValueError(f"config.optim.grad_accum_steps must be >= 1, got {accum}")
    return accum


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """The learning rate of each optimizer update of a ``total_steps``-step run, by update index.

    The one schedule: the optimizer applies it and `current_learning_rate`
    reports it. ``plateau`` is constant here and scaled by `plateau_transform`.
    """
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"config.optim.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    total_updates = max(total_steps // steps_per_update(cfg), 1)
    if cfg.schedule == "warmup_cosine":
        warmup = min(int(cfg.warmup_updates), max(total_updates - 1, 0))
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup,
            decay_steps=max(total_updates, warmup + 1), end_value=cfg.learning_rate * cfg.final_lr_fraction,
        )
    return optax.constant_schedule(cfg.learning_rate)


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """AdamW with decoupled weight decay, optional clipping, and accumulation over
    ``cfg.grad_accum_steps`` batches (optax.MultiSteps: one update per k steps)."""
    accum = steps_per_update(cfg)
    parts = []
    if cfg.clip_grad_norm:
        parts.append(optax.clip_by_global_norm(cfg.clip_grad_norm))
    parts.append(optax.adamw(learning_rate_schedule(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay))
    tx = optax.chain(*parts)
    return optax.MultiSteps(tx, every_k_schedule=accum) if accum > 1 else tx


def plateau_transform(cfg: ml_collections.ConfigDict) -> optax.GradientTransformationExtraArgs:
    """ReduceLROnPlateau on the validation loss, as the reference recipe does.

    It is fed once per evaluation (not per step), so its patience counts
    evaluations. ``plateau_patience`` has torch's meaning (reduce once more than
    ``patience`` evaluations failed to improve); optax reduces at ``patience``
    failures, hence the +1. With ``schedule != "plateau"`` the scale stays 1.
    """
    if cfg.schedule != "plateau":
        return optax.contrib.reduce_on_plateau(factor=0.5, patience=2**30, accumulation_size=1)
    return optax.contrib.reduce_on_plateau(
        factor=cfg.plateau_factor, patience=cfg.plateau_patience + 1, cooldown=0, accumulation_size=1,
    )


def plateau_scale(plateau_state: Any) -> jax.Array:
    return jnp.asarray(plateau_state.scale, jnp.float32)


def current_learning_rate(cfg: ml_collections.ConfigDict, total_steps: int, step: jax.Array, plateau_state: Any) -> jax.Array:
    """The rate of the update that training step ``step`` contributes to, plateau scale included.

    That update is the optimizer's ``step // steps_per_update``-th (optax.MultiSteps
    counts updates, not steps); `steps.make_train_step` multiplies it by the scale.
    """
    schedule = learning_rate_schedule(cfg, total_steps)
    return schedule(step // steps_per_update(cfg)) * plateau_scale(plateau_state)
