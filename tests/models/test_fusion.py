"""Stream fusion: eqs. (5)-(6) by hand, a NumPy phi for the temporal gate, a PyTorch
Fig. 4 block for the spatio-temporal one, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

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


def randomise_bn_stats(module, seed=5):
    rng = np.random.default_rng(seed)
    for _, bn in nnx.iter_modules(module):
        if isinstance(bn, nnx.BatchNorm):
            size = bn.mean[...].shape
            bn.mean[...] = jnp.asarray(rng.normal(0, 0.3, size), jnp.float32)
            bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size), jnp.float32)
            bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, size), jnp.float32)
            bn.bias[...] = jnp.asarray(rng.normal(0, 0.3, size), jnp.float32)


class TorchFig4DFF(nn.Module):
    """The DFF block as FACTS.md ("Dynamic Feature Fusion") and the paper's Fig. 4 describe it,
    in PyTorch's NCTHW layout.

    X = F_dark + F_ret; local branch = 1x1x1 conv -> BN -> ReLU -> 1x1x1 conv -> BN on X; global
    branch = the same after an average pool; a 1x1x1 weighting conv with 2 outputs on their sum;
    softmax over the streams; fused = w_dark F_dark + w_ret F_ret. The pool keeps T (weights "at
    each time step", Sec. 3.4): AdaptiveAvgPool3d((None, 1, 1)) averages H and W only. Bottleneck
    convolutions have no bias, as the module's (a bias before BatchNorm cancels in training).
    """

    def __init__(self, channels: int, inner: int):
        super().__init__()

        def bottleneck(*pool):
            return nn.Sequential(*pool, nn.Conv3d(channels, inner, 1, bias=False), nn.BatchNorm3d(inner), nn.ReLU(),
                                 nn.Conv3d(inner, channels, 1, bias=False), nn.BatchNorm3d(channels))

        self.local_att = bottleneck()
        self.global_att = bottleneck(nn.AdaptiveAvgPool3d((None, 1, 1)))
        self.weighting = nn.Conv3d(channels, 2, 1)

    def forward(self, f_dark, f_ret):
        x = f_dark + f_ret
        weights = torch.softmax(self.weighting(self.local_att(x) + self.global_att(x)), dim=1)
        return weights[:, :1] * f_dark + weights[:, 1:] * f_ret, weights


def torch_fig4_from(dff: SpatiotemporalDFF) -> TorchFig4DFF:
    """The reference in float64 with the module's weights and BatchNorm state."""
    inner = dff.local_branch.reduce.kernel[...].shape[-1]
    ref = TorchFig4DFF(C, inner).double()

    def conv(torch_conv, flax_conv):  # flax (1, 1, 1, in, out) -> torch (out, in, 1, 1, 1)
        torch_conv.weight.copy_(torch.from_numpy(np64(flax_conv.kernel).transpose(4, 3, 0, 1, 2).copy()))
        if torch_conv.bias is not None:
            torch_conv.bias.copy_(torch.from_numpy(np64(flax_conv.bias)))

    def bn(torch_bn, flax_bn):
        torch_bn.eps, torch_bn.momentum = flax_bn.epsilon, 1 - flax_bn.momentum
        for name, value in (("weight", flax_bn.scale), ("bias", flax_bn.bias),
                            ("running_mean", flax_bn.mean), ("running_var", flax_bn.var)):
            getattr(torch_bn, name).copy_(torch.from_numpy(np64(value)))

    with torch.no_grad():
        for seq, branch in ((ref.local_att, dff.local_branch), (ref.global_att, dff.global_branch)):
            conv1, bn1, _, conv2, bn2 = list(seq)[-5:]
            conv(conv1, branch.reduce), bn(bn1, branch.reduce_bn), conv(conv2, branch.expand), bn(bn2, branch.expand_bn)
        conv(ref.weighting, dff.weighting)
    return ref


def to_ncthw(x):
    return torch.from_numpy(np.asarray(x, np.float64).transpose(0, 4, 1, 2, 3).copy())


def from_ncthw(t):
    return t.detach().numpy().transpose(0, 2, 3, 4, 1)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_spatiotemporal_dff_matches_the_fig4_reference(mode):
    dff = SpatiotemporalDFF(C, reduction=4, rngs=rngs())
    randomise_bn_stats(dff)  # eval: non-trivial running statistics; train: a non-trivial BN affine
    f_dark, f_ret = randn(1, N, T, H, W, C), randn(2, N, T, H, W, C)
    ref = torch_fig4_from(dff)
    getattr(dff, mode)()
    ref.train(mode == "train")
    fused, weights = dff(f_dark, f_ret)
    want_fused, want_weights = ref(to_ncthw(f_dark), to_ncthw(f_ret))
    assert fused.shape == (N, T, H, W, C) and weights.shape == (N, T, H, W, 2)
    # float32 against float64 (seen: ~2e-7 on weights). The logits are O(3) after ~20
    # float32 roundings (u = 6e-8): ~4e-6, which training-mode BatchNorm can magnify up to
    # ~10x where it divides by the spread of only N x T = 8 pooled values: <= 4e-5. The
    # softmax's slope is <= 1/4, so weights err by <= 1e-5; fused = F_ret + w_dark (F_dark -
    # F_ret) by that times |F_dark - F_ret| (<= ~5 for these draws): <= 6e-5. A changed pool
    # (over T too, max) or branch (either dropped, streams swapped) moves weights by >= 2e-2.
    np.testing.assert_allclose(weights, from_ncthw(want_weights), rtol=0, atol=1e-5)
    np.testing.assert_allclose(fused, from_ncthw(want_fused), rtol=0, atol=6e-5)
    if mode == "train":  # running means follow the batch means with torch momentum 0.1 (= flax 0.9)
        for seq, branch in ((ref.local_att, dff.local_branch), (ref.global_att, dff.global_branch)):
            torch_bns = [m for m in seq if isinstance(m, nn.BatchNorm3d)]
            for torch_bn, flax_bn in zip(torch_bns, (branch.reduce_bn, branch.expand_bn)):
                # Means of O(1) activations, 0.1 of which is new: float32 rounding ~1e-7.
                np.testing.assert_allclose(flax_bn.mean[...], torch_bn.running_mean.numpy(), rtol=0, atol=1e-6)


def test_spatiotemporal_dff_context_is_per_time_step():
    """Fig. 4 / Sec. 3.4: the weights of time step t see every pixel of step t (the global
    branch) and nothing of the other steps; with no global branch, or one pooled over T
    as well, this fails."""
    dff = SpatiotemporalDFF(C, reduction=4, rngs=rngs())
    randomise_bn_stats(dff)
    dff.eval()  # BatchNorm on running statistics: clips and positions do not mix through it
    f_dark, f_ret = randn(1, N, T, H, W, C), randn(2, N, T, H, W, C)
    _, weights = dff(f_dark, f_ret)
    t0 = 1
    bumped = f_ret.at[0, t0, 0, 0].add(5.0)  # one pixel of one frame of clip 0
    _, moved = dff(f_dark, bumped)
    change = np.abs(np.asarray(moved) - np.asarray(weights))[..., 0]
    # Other time steps and the other clip: the same program on the same numbers.
    others = [t for t in range(T) if t != t0]
    np.testing.assert_array_equal(change[0, others], 0.0)
    np.testing.assert_array_equal(change[1], 0.0)
    # Every position of step t0 moves, not only the bumped one: a bump of 5 in one of the
    # H x W = 9 pixels moves the pooled context by ~0.5 and the weights by ~4e-3 (seen);
    # float32 rounding alone would move them by ~1e-7.
    assert change[0, t0].min() > 1e-4, change[0, t0]


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
