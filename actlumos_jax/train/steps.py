"""The one train-step library every stage uses.

``train_step(state, batch, teacher_vars) -> (state, metrics)`` and
``eval_step(state, batch, teacher_vars) -> sums`` are pure functions; the
stages differ only in the `Stage` they close over (``stages/``). `jit_steps`
compiles them with explicit in/out shardings and a donated state.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from actlumos_jax.train import optim
from actlumos_jax.train.state import FrozenModel, TrainState, merge_model, split_model
from actlumos_jax.train.stages import Stage

StepFn = Callable[[TrainState, Any, FrozenModel | None], tuple[TrainState, dict]]


def _teacher(teacher_graphdef, teacher_vars: FrozenModel | None):
    if teacher_graphdef is None or teacher_vars is None:
        return None
    teacher = merge_model(teacher_graphdef, teacher_vars.params, teacher_vars.batch_stats, teacher_vars.rngs)
    teacher.eval()
    return teacher


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, stage: Stage,
                    learning_rate_fn: Callable[[jax.Array, Any], jax.Array],
                    teacher_graphdef: nnx.GraphDef | None = None) -> StepFn:
    def train_step(state: TrainState, batch, teacher_vars: FrozenModel | None):
        teacher = _teacher(teacher_graphdef, teacher_vars)

        def loss_fn(params):
            model = merge_model(graphdef, params, state.batch_stats, state.rngs)
            model.train()
            loss, metrics = stage.loss(model, batch, teacher)
            _, _, batch_stats, rngs = split_model(model)
            return loss, (metrics, batch_stats, rngs)

        (loss, (metrics, batch_stats, rngs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        updates = jax.tree.map(lambda u: u * optim.plateau_scale(state.plateau).astype(u.dtype), updates)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads),
                       learning_rate=learning_rate_fn(state.step, state.plateau))
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  rngs=rngs, opt_state=opt_state)
        return new_state, metrics

    return train_step


def make_eval_step(graphdef: nnx.GraphDef, stage: Stage, teacher_graphdef: nnx.GraphDef | None = None) -> StepFn:
    """The stage's masked sums over the valid (mask=True) clips, so padded batches give exact means."""

    def eval_step(state: TrainState, batch, teacher_vars: FrozenModel | None):
        model = merge_model(graphdef, state.params, state.batch_stats, state.rngs)
        model.eval()
        return stage.eval_sums(model, batch, _teacher(teacher_graphdef, teacher_vars))

    return eval_step


def make_plateau_step(plateau_tx: optax.GradientTransformationExtraArgs):
    """Feeds one validation loss to reduce-on-plateau; returns the new state."""

    def plateau_step(state: TrainState, val_loss: jax.Array) -> TrainState:
        _, plateau = plateau_tx.update(jnp.zeros(()), state.plateau, value=val_loss)
        return state.replace(plateau=plateau)

    return plateau_step


def jit_steps(train_step: StepFn, eval_step: StepFn, *, state_sharding, batch_sharding,
              teacher_sharding, replicated):
    """Compiles both steps with explicit shardings; the train state is donated."""
    train = jax.jit(
        train_step,
        in_shardings=(state_sharding, batch_sharding, teacher_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0,),
    )
    evaluate = jax.jit(
        eval_step,
        in_shardings=(state_sharding, batch_sharding, teacher_sharding),
        out_shardings=replicated,
    )
    return train, evaluate
