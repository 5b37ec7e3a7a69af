"""The shared train/eval steps: SPMD equality, BatchNorm updates, NaN safety."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.models import build_model
from actlumos_jax.train import optim, parallel, steps
from actlumos_jax.train.state import create_train_state, frozen_from_model
from actlumos_jax.train.stages import make_stage
from tests.train.helpers import random_batch, tiny_config


def _setup(stage, mesh, config=None):
    config = config or tiny_config(stage)
    stage = make_stage(config)
    model = build_model(config.model, 11, kind=stage.model_kind, rngs=nnx.Rngs(0, dropout=1, mask=2))
    tx, plateau_tx = optim.make_optimizer(config.optim, 100), optim.plateau_transform(config.optim)
    graphdef, state = create_train_state(model, tx, plateau_tx)
    teacher_graphdef = teacher_vars = None
    if stage.needs_teacher:
        teacher = build_model(config.model, 11, kind="teacher", rngs=nnx.Rngs(5))
        teacher_graphdef, teacher_vars = frozen_from_model(teacher)
    lr_fn = lambda step, plateau: optim.current_learning_rate(config.optim, 100, step, plateau)
    repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    state_shard = parallel.sharding_from_rules(state, mesh, [])
    train, evaluate = steps.jit_steps(
        steps.make_train_step(graphdef, tx, stage, lr_fn, teacher_graphdef),
        steps.make_eval_step(graphdef, stage, teacher_graphdef),
        state_sharding=state_shard, batch_sharding=data, teacher_sharding=repl, replicated=repl)
    state = jax.device_put(state, state_shard)
    teacher_vars = jax.device_put(teacher_vars, repl) if teacher_vars is not None else None
    return state, train, evaluate, teacher_vars, data


def _global(batch, sharding):
    return jax.tree.map(lambda x: jax.device_put(x, sharding), batch)


@pytest.mark.parametrize("stage", ["teacher", "ssl"])
def test_one_device_and_eight_devices_agree(stage):
    assert jax.device_count() == 8
    batch = random_batch(stage)
    results = []
    for n in (1, 8):
        mesh = parallel.make_mesh(n)
        state, train, _, teacher_vars, data = _setup(stage, mesh)
        learning_rates, per_step = [], []
        for _ in range(2):
            state, metrics = train(state, _global(batch, data), teacher_vars)
            learning_rates.append(float(metrics["learning_rate"]))
            per_step.append(jax.device_get(metrics))
        results.append((per_step, jax.device_get(state.params), jax.device_get(state.batch_stats), learning_rates))
    (m1, p1, b1, lr1), (m8, p8, b8, lr8) = results
    assert lr1 == lr8
    # The first step starts from the same parameters: one device and eight differ only in the order
    # of float32 reductions (batch means, the gradient all-reduce), ~1e-7 relative per sum, so the
    # loss agrees to well under 1e-5 relative. The gradient also passes back through each BatchNorm's
    # division by a batch standard deviation, which amplifies those rounding differences where a
    # channel's spread is small next to its mean (eight 32x32 clips at 1/8 width): 2.3e-4 relative was
    # seen at LLVM level 0. A sharding error (per-device BatchNorm, a wrong all-reduce) changes both
    # by O(1e-2), so 1e-3 still tells the two apart.
    np.testing.assert_allclose(m1[0]["loss"], m8[0]["loss"], rtol=1e-5)
    np.testing.assert_allclose(m1[0]["grad_norm"], m8[0]["grad_norm"], rtol=1e-3)
    # The second starts from parameters that Adam may have moved apart by up to 2 x the learning rate
    # each (below), so its loss may differ by the first-order change |g| |dtheta| <= |g| 2 lr sqrt(P).
    count = sum(np.size(x) for x in jax.tree.leaves(p1))
    drift = m1[1]["grad_norm"] * 2 * lr1[0] * np.sqrt(count)
    assert abs(m1[1]["loss"] - m8[1]["loss"]) <= drift + 1e-5 * abs(m1[1]["loss"]), (m1[1]["loss"], m8[1]["loss"], drift)
    stats = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), b1, b8))
    scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(b1))
    assert max(stats) < 1e-5 * scale, (max(stats), scale)
    # Parameters: Adam divides each gradient by its own running scale, so where a gradient is at
    # rounding level (a parameter the loss barely touches) the two rounding errors can take a
    # whole step in different directions. Adam's normalised step is at most ~1 per unit learning
    # rate, so no parameter can differ by more than 2 x the sum of the learning rates applied.
    bound = 2 * sum(lr1)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), p1, p8))
    assert bound > 0 and max(diffs) <= bound, (max(diffs), bound)


def test_train_step_updates_batch_stats_and_params():
    mesh = parallel.make_mesh(1)
    state, train, _, teacher_vars, data = _setup("teacher", mesh, tiny_config("teacher", **{"optim.schedule": "constant"}))
    snapshot = lambda s: jax.tree.map(np.array, jax.device_get((s.params, s.batch_stats)))  # copies: state is donated
    before = snapshot(state)
    state, metrics = train(state, _global(random_batch("teacher"), data), teacher_vars)
    after = snapshot(state)
    changed = lambda a, b: any(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.any(x != y)), a, b)))
    assert changed(before[0], after[0]), "params did not move"
    assert changed(before[1], after[1]), "BatchNorm running statistics were dropped"
    assert int(state.step) == 1
    assert np.isfinite(metrics["loss"]) and metrics["supcon"] > 0 and metrics["ce"] > 0


def test_a_bfloat16_teacher_step_trains_as_the_float32_one_does():
    mesh = parallel.make_mesh(1)
    batch = random_batch("teacher")
    losses = {}
    for dtype in ("float32", "bfloat16"):
        state, train, _, teacher_vars, data = _setup("teacher", mesh, tiny_config("teacher", **{"model.dtype": dtype, "optim.schedule": "constant"}))
        before = jax.tree.map(np.array, jax.device_get(state.params))
        state, metrics = train(state, _global(batch, data), teacher_vars)
        after = jax.device_get(state.params)
        assert all(x.dtype == np.float32 for x in jax.tree.leaves(after))  # master weights stay float32
        assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after)))
        losses[dtype] = float(metrics["loss"])
    # bfloat16 keeps 8 bits of mantissa (2^-9 relative rounding per operation). Through ~20 layers,
    # each renormalised by BatchNorm, errors add up like a random walk to a few 1e-3 of a loss of
    # O(1); 3e-2 relative leaves room for that and still fails on a wrong cast (a loss off by O(1)).
    assert np.isfinite(losses["bfloat16"])
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=3e-2)


def test_eval_step_counts_only_valid_samples():
    mesh = parallel.make_mesh(2)
    state, _, evaluate, teacher_vars, data = _setup("kd", mesh, tiny_config("kd", **{"loss.kd_weight": 0.0}))
    batch = random_batch("kd")
    batch["mask"][5:] = False
    out = jax.device_get(evaluate(state, _global(batch, data), teacher_vars))
    assert out["count"] == 5
    assert 0 <= out["top1_correct"] <= out["top5_correct"] <= 5


def test_ssl_validation_loss_ignores_padded_clips():
    # The eval loader pads its last batch with zero clips marked mask=False; the SSL validation
    # loss (which picks the best SSL checkpoint) must be the loss of the real clips alone.
    mesh = parallel.make_mesh(1)
    state, _, evaluate, _, data = _setup("ssl", mesh)
    batch = random_batch("ssl")
    padded = {k: v.copy() for k, v in batch.items()}
    padded["mask"][5:] = False
    for key in ("fast", "slow"):
        padded[key][5:] = 0
    other = {k: v.copy() for k, v in padded.items()}
    for key in ("fast", "slow"):  # other padding content: the same result
        other[key][5:] = 37
    out, again = (jax.device_get(evaluate(state, _global(b, data), None)) for b in (padded, other))
    assert out["count"] == 5
    # Eval mode (running statistics): each clip's projection depends on that clip alone, so the
    # two sums differ only by float32 rounding of O(1) values.
    np.testing.assert_allclose(out["loss_sum"], again["loss_sum"], rtol=1e-5)
    full = jax.device_get(evaluate(state, _global(batch, data), None))
    assert abs(full["loss_sum"] / full["count"] - out["loss_sum"] / out["count"]) > 1e-3


def test_gradient_accumulation_matches_one_big_batch():
    """optax.MultiSteps over two half batches == one step on the full batch (no BatchNorm in the loss path)."""
    config = tiny_config("kd", **{"optim.grad_accum_steps": 2, "optim.schedule": "constant"})
    tx_acc = optim.make_optimizer(config.optim, 10)
    config.optim.grad_accum_steps = 1
    tx_one = optim.make_optimizer(config.optim, 10)
    w = {"w": jnp.arange(6.0).reshape(3, 2) / 10}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
    loss = lambda p, xs: jnp.mean((xs @ p["w"]) ** 2)
    s_acc = tx_acc.init(w)
    p_acc = w
    for half in (x[:4], x[4:]):
        u, s_acc = tx_acc.update(jax.grad(loss)(p_acc, half), s_acc, p_acc)
        p_acc = jax.tree.map(lambda a, b: a + b, p_acc, u)
    u, _ = tx_one.update(jax.grad(loss)(w, x), tx_one.init(w), w)
    p_one = jax.tree.map(lambda a, b: a + b, w, u)
    np.testing.assert_allclose(p_acc["w"], p_one["w"], rtol=1e-6)
    assert not np.allclose(p_one["w"], w["w"])


def test_plateau_scale_drops_after_patience():
    """torch's ReduceLROnPlateau(patience=1): the 2nd evaluation without improvement halves the rate."""
    config = tiny_config("kd", **{"optim.schedule": "plateau", "optim.plateau_patience": 1,
                                  "optim.plateau_factor": 0.5})
    plateau = optim.plateau_transform(config.optim)
    state = plateau.init({})
    scales = []
    for value in (1.0, 0.9, 0.95, 0.93, 0.92, 0.5):
        _, state = plateau.update(jnp.zeros(()), state, value=value)
        scales.append(float(optim.plateau_scale(state)))
    assert scales == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    config.optim.schedule = "warmup_cosine"  # other schedules never scale
    plateau = optim.plateau_transform(config.optim)
    state = plateau.init({})
    for value in (1.0, 2.0, 3.0, 4.0):
        _, state = plateau.update(jnp.zeros(()), state, value=value)
    assert float(optim.plateau_scale(state)) == 1.0
