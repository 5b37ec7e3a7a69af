"""Stream fusion: eqs. (5)-(6) by hand, NumPy re-implementations of the gates, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.models.fusion import (
    ConcatFusion, SingleStream, SpatiotemporalDFF, TemporalDFF, gated_sum,
)

N, T, H, W, C = 2, 4, 3, 3, 16


def rngs(seed=0):
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def randn(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def np64(p):
    return np.asarray(p[...], np.float64)


def np_softmax(g):
    e = np.exp(g - g.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def check_gate(fused, weights, f_dark, f_ret):
    w = np.asarray(weights)
    assert w.shape == f_dark.shape[:-1] + (2,)
    assert (w > 0).all() and (w < 1).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    by_hand = w[..., :1] * np.asarray(f_dark) + w[..., 1:] * np.asarray(f_ret)
    np.testing.assert_allclose(fused, by_hand, rtol=1e-5, atol=1e-6)


def test_worked_example_eq5_eq6():
    # g = (ln 3, 0) -> softmax = (3/4, 1/4); f = 3/4 (4, 8) + 1/4 (0, 4) = (3, 7).
    f_dark = jnp.array([[[4.0, 8.0]]])
    f_ret = jnp.array([[[0.0, 4.0]]])
    fused, weights = gated_sum(f_dark, f_ret, jnp.array([[[np.log(3.0), 0.0]]]))
    np.testing.assert_allclose(weights, [[[0.75, 0.25]]], rtol=1e-6)
    np.testing.assert_allclose(fused, [[[3.0, 7.0]]], rtol=1e-6)


def test_temporal_dff_matches_numpy_phi():
    dff = TemporalDFF(C, hidden=8, rngs=rngs())
    f_dark, f_ret = randn(1, N, T, C), randn(2, N, T, C)
    fused, weights = dff(f_dark, f_ret)
    assert fused.shape == (N, T, C)
    check_gate(fused, weights, f_dark, f_ret)
    # phi per time step, written as explicit loops.
    want = np.zeros((N, T, 2))
    for n in range(N):
        for t in range(T):
            z = np.concatenate([np.asarray(f_dark[n, t]), np.asarray(f_ret[n, t])]).astype(np.float64)
            hidden = np.maximum(z @ np64(dff.hidden.kernel) + np64(dff.hidden.bias), 0)
            want[n, t] = np_softmax(hidden @ np64(dff.gate.kernel) + np64(dff.gate.bias))
    np.testing.assert_allclose(weights, want, rtol=1e-5, atol=1e-6)
    # The gate really varies over time (it is per time step, not per clip).
    assert np.abs(np.diff(np.asarray(weights[..., 0]), axis=1)).max() > 1e-4


@pytest.mark.parametrize("bias, stream", [((40.0, -40.0), 0), ((-40.0, 40.0), 1)])
def test_temporal_dff_strong_bias_selects_one_stream(bias, stream):
    dff = TemporalDFF(C, hidden=8, rngs=rngs())
    dff.gate.kernel[...] = jnp.zeros_like(dff.gate.kernel[...])
    dff.gate.bias[...] = jnp.array(bias)
    f_dark, f_ret = randn(1, N, T, C), randn(2, N, T, C)
    fused, _ = dff(f_dark, f_ret)
    np.testing.assert_allclose(fused, (f_dark, f_ret)[stream], rtol=1e-6, atol=1e-6)


def test_temporal_dff_gradients_reach_both_streams_and_phi():
    dff = TemporalDFF(C, hidden=8, rngs=rngs())
    f_dark, f_ret, probe = randn(1, N, T, C), randn(2, N, T, C), randn(3, N, T, C)

    def loss(model, a, b):
        return jnp.sum(model(a, b)[0] * probe)

    grads = nnx.grad(loss, argnums=(0, 1, 2))(dff, f_dark, f_ret)
    for g in jax.tree.leaves(grads):
        assert np.abs(np.asarray(g)).max() > 0


def np_bottleneck(x, branch):
    """conv -> BN (eval: running stats) -> ReLU -> conv -> BN, 1x1x1 convs as matmuls."""
    def bn(y, m):
        return (y - np64(m.mean)) / np.sqrt(np64(m.var) + m.epsilon) * np64(m.scale) + np64(m.bias)
    y = np.maximum(bn(x @ np64(branch.reduce.kernel)[0, 0, 0], branch.reduce_bn), 0)
    return bn(y @ np64(branch.expand.kernel)[0, 0, 0], branch.expand_bn)


def randomise_bn_stats(module, seed=5):
    rng = np.random.default_rng(seed)
    for _, bn in nnx.iter_modules(module):
        if isinstance(bn, nnx.BatchNorm):
            size = bn.mean[...].shape
            bn.mean[...] = jnp.asarray(rng.normal(0, 0.3, size), jnp.float32)
            bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size), jnp.float32)
            bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, size), jnp.float32)
            bn.bias[...] = jnp.asarray(rng.normal(0, 0.3, size), jnp.float32)


def test_spatiotemporal_dff_matches_numpy_in_eval():
    dff = SpatiotemporalDFF(C, reduction=4, rngs=rngs())
    randomise_bn_stats(dff)
    dff.eval()
    f_dark, f_ret = randn(1, N, T, H, W, C), randn(2, N, T, H, W, C)
    fused, weights = dff(f_dark, f_ret)
    assert fused.shape == (N, T, H, W, C)
    check_gate(fused, weights, f_dark, f_ret)
    x = np.asarray(f_dark, np.float64) + np.asarray(f_ret, np.float64)
    pooled = x.mean(axis=(2, 3), keepdims=True)  # over H, W only: one context per time step
    mixed = np_bottleneck(x, dff.local_branch) + np_bottleneck(pooled, dff.global_branch)
    logits = mixed @ np64(dff.weighting.kernel)[0, 0, 0] + np64(dff.weighting.bias)
    np.testing.assert_allclose(weights, np_softmax(logits), rtol=1e-4, atol=1e-5)


def test_spatiotemporal_dff_train_mode_updates_stats_and_selects_stream():
    dff = SpatiotemporalDFF(C, reduction=4, rngs=rngs())
    f_dark, f_ret = randn(1, N, T, H, W, C), randn(2, N, T, H, W, C)
    before = np.asarray(dff.local_branch.reduce_bn.mean[...])
    dff.train()
    fused, weights = dff(f_dark, f_ret)
    check_gate(fused, weights, f_dark, f_ret)
    assert np.abs(np.asarray(dff.local_branch.reduce_bn.mean[...]) - before).max() > 0
    dff.weighting.kernel[...] = jnp.zeros_like(dff.weighting.kernel[...])
    dff.weighting.bias[...] = jnp.array([-40.0, 40.0])
    np.testing.assert_allclose(dff(f_dark, f_ret)[0], f_ret, rtol=1e-6, atol=1e-6)


def test_concat_fusion_is_a_linear_projection_of_both_streams():
    fusion = ConcatFusion(C, rngs=rngs())
    f_dark, f_ret = randn(1, N, T, C), randn(2, N, T, C)
    fused, weights = fusion(f_dark, f_ret)
    assert weights is None
    kernel = np64(fusion.project.kernel)
    want = np.asarray(f_dark) @ kernel[:C] + np.asarray(f_ret) @ kernel[C:] + np64(fusion.project.bias)
    np.testing.assert_allclose(fused, want, rtol=1e-5, atol=1e-5)


def test_single_stream():
    f_dark, f_ret = randn(1, N, T, C), randn(2, N, T, C)
    fused, weights = SingleStream("dark")(f_dark, None)
    assert weights is None and fused is f_dark
    assert SingleStream("retinex")(f_dark, f_ret)[0] is f_ret
    with pytest.raises(ValueError, match="dark.*retinex"):
        SingleStream("enhanced")
    with pytest.raises(ValueError, match="no retinex features"):
        SingleStream("retinex")(f_dark, None)


def test_shape_errors():
    dff = TemporalDFF(C, rngs=rngs())
    with pytest.raises(ValueError, match="differ in shape"):
        dff(randn(1, N, T, C), randn(2, N, T + 1, C))
    with pytest.raises(ValueError, match="16 channels"):
        dff(randn(1, N, T, C + 1), randn(2, N, T, C + 1))
    with pytest.raises(ValueError, match="5-D"):
        SpatiotemporalDFF(C, rngs=rngs())(randn(1, N, T, C), randn(2, N, T, C))
