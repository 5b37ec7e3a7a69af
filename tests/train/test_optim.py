"""The learning rate a train step reports is the one its optimizer update applies."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.train import optim, steps
from actlumos_jax.train.state import create_train_state

LEARNING_RATE = 1e-2


class _Weights(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.zeros((4,), jnp.float32))


class _SumStage:
    """loss = sum(w): every gradient is 1, clipped to 0.5 (global norm 2 -> 1), so Adam's
    normalised direction m_hat / (sqrt(v_hat) + eps) is 1 and each update moves w by -rate."""

    def loss(self, model, batch, teacher):
        del batch, teacher
        return jnp.sum(model.w[...]), {}


def _optim_config(schedule: str, accum: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        # Betas that float32 holds exactly (0.999 is off by 1.3e-8, which alone moves Adam's
        # bias-corrected step by ~1e-5 relative and would hide a small schedule error).
        learning_rate=LEARNING_RATE, weight_decay=0.0, b1=0.5, b2=0.75, eps=1e-8, schedule=schedule,
        warmup_updates=2, final_lr_fraction=0.1, grad_accum_steps=accum, clip_grad_norm=1.0,
        plateau_factor=0.5, plateau_patience=1))


@pytest.mark.parametrize("schedule, accum, plateau_scale", [
    ("warmup_cosine", 1, 1.0), ("warmup_cosine", 3, 1.0), ("constant", 2, 0.5), ("plateau", 1, 0.25)])
def test_reported_learning_rate_is_the_applied_one(schedule, accum, plateau_scale):
    cfg = _optim_config(schedule, accum)
    total_steps = 13  # not a multiple of 3: the last step belongs to no full update
    tx, plateau_tx = optim.make_optimizer(cfg, total_steps), optim.plateau_transform(cfg)
    graphdef, state = create_train_state(_Weights(), tx, plateau_tx)
    # The plateau scale as a reduction on the validation loss would leave it.
    state = state.replace(plateau=state.plateau._replace(scale=jnp.asarray(plateau_scale, state.plateau.scale.dtype)))
    lr_fn = lambda step, plateau: optim.current_learning_rate(cfg, total_steps, step, plateau)
    train = jax.jit(steps.make_train_step(graphdef, tx, _SumStage(), lr_fn))

    reported, moved = [], []
    for _ in range(total_steps):
        before = np.asarray(state.params["w"][...])
        state, metrics = train(state, {}, None)
        reported.append(float(metrics["learning_rate"]))
        moved.append(float(np.mean(before - np.asarray(state.params["w"][...]))))
    reported, moved = np.array(reported), np.array(moved)

    # With exact betas and a constant gradient, m_hat and v_hat are exact (0.5 and 0.25), so
    # Adam's direction is 0.5 / (0.5 + eps) = 1 - 2e-8, plus the rounding of the square root,
    # the division and the rate times it (3 x 6e-8 relative); w stays below 13 x 1e-2, so
    # reading the step off w adds <= 2 ulps of 0.13 (~3e-8 absolute). One update off in the
    # schedule changes the rate by >= 1.8 % (warm-up 0 -> 5e-3 -> 1e-2, then a cosine over the
    # remaining updates), a missing plateau scale by 2x or 4x.
    rtol, atol = 1e-6, 6e-8
    updates = total_steps // accum
    for u in range(updates):
        last = (u + 1) * accum - 1
        # MultiSteps applies the update on the last step of its group; the others move nothing.
        np.testing.assert_array_equal(moved[u * accum:last], 0.0)
        # Every step of the group reports the rate of the update it contributes to.
        np.testing.assert_allclose(reported[u * accum:last + 1], moved[last], rtol=rtol, atol=atol,
                                   err_msg=f"update {u}")
    assert np.ptp(reported[: updates * accum]) > 0 or schedule != "warmup_cosine"
    assert reported.max() == pytest.approx(LEARNING_RATE * plateau_scale, rel=1e-6)


def test_learning_rate_schedule_counts_updates():
    cfg = _optim_config("warmup_cosine", 4)
    schedule = optim.learning_rate_schedule(cfg, total_steps=40)  # 10 updates, 2 of warm-up
    assert [float(schedule(u)) for u in range(3)] == pytest.approx([0.0, LEARNING_RATE / 2, LEARNING_RATE])
    assert float(schedule(10)) == pytest.approx(LEARNING_RATE * cfg.final_lr_fraction)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        optim.make_optimizer(_optim_config("constant", 0), 10)
    with pytest.raises(ValueError, match="schedule"):
        optim.learning_rate_schedule(_optim_config("linear", 1), 10)
