"""The train state: a plain pytree, so steps are pure functions of (state, batch).

A model is split once into a static ``graphdef`` and three pieces of state:
  params       nnx.Param             (trained)
  batch_stats  nnx.BatchStat         (BatchNorm running statistics)
  rngs         everything else       (NNX RNG stream keys and counters for
                                      dropout and key masking)
Inside a jitted function the model is rebuilt with ``nnx.merge(..., copy=True)``
and split again after the forward pass, so BatchNorm updates are returned
explicitly instead of being lost as side effects of a traced call.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: nnx.State
    batch_stats: nnx.State
    rngs: nnx.State
    opt_state: optax.OptState
    plateau: Any  # optax.contrib reduce-on-plateau state; its .scale multiplies updates.


@flax.struct.dataclass
class FrozenModel:
    """Variables of a model that only runs forward (the KD teacher)."""

    params: nnx.State
    batch_stats: nnx.State
    rngs: nnx.State


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State, nnx.State]:
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def merge_model(graphdef: nnx.GraphDef, params: nnx.State, batch_stats: nnx.State, rngs: nnx.State) -> nnx.Module:
    return nnx.merge(graphdef, params, batch_stats, rngs, copy=True)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation,
                       plateau_tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
    graphdef, params, batch_stats, rngs = split_model(model)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        rngs=rngs,
        opt_state=tx.init(params),
        plateau=plateau_tx.init(params),
    )
    return graphdef, state


def frozen_from_model(model: nnx.Module) -> tuple[nnx.GraphDef, FrozenModel]:
    graphdef, params, batch_stats, rngs = split_model(model)
    return graphdef, FrozenModel(params, batch_stats, rngs)


def model_from_state(graphdef: nnx.GraphDef, state: TrainState | FrozenModel) -> nnx.Module:
    return merge_model(graphdef, state.params, state.batch_stats, state.rngs)
