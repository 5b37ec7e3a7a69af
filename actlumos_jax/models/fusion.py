"""Fusion of the dark and retinex streams (paper Sec. 3.4, eqs. (5)-(6), Fig. 4).

Every module is called as ``fusion(f_dark, f_ret)`` and returns
``(fused, weights)``; ``weights`` holds the gate's per-stream weights
(last axis: [dark, retinex]) for inspection and plots, or None for the
static / single-stream baselines.
"""

from __future__ import annotations

from typing import Any

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from actlumos_jax.models.encoder import torch_linear_init

STREAMS = ("dark", "retinex")


def _check_pair(name: str, f_dark: jax.Array, f_ret: jax.Array, ndim: int, channels: int) -> None:
    if f_dark.shape != f_ret.shape:
        raise ValueError(f"{name}: dark and retinex features differ in shape: {f_dark.shape} vs {f_ret.shape}")
    if f_dark.ndim != ndim or f_dark.shape[-1] != channels:
        raise ValueError(f"{name} expects {ndim}-D features with {channels} channels last, got {f_dark.shape}")


def gated_sum(f_dark: jax.Array, f_ret: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eqs. (5)-(6): w = softmax(g) over the two streams; f = w_dark f_dark + w_ret f_ret.

    ``logits`` has the features' leading shape plus a last axis of 2.
    Returns (fused, weights); the softmax runs in float32.
    """
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    w = weights.astype(f_dark.dtype)
    return w[..., 0:1] * f_dark + w[..., 1:2] * f_ret, weights


class TemporalDFF(nnx.Module):
    """Per-time-step gate on pooled tokens, eqs. (5)-(6).

    phi is the "lightweight 3-D MLP": Linear(2C -> hidden) -> ReLU -> Linear(hidden -> 2)
    applied at every time step, i.e. two 1x1x1 convolutions on the pooled sequence.
    f_dark, f_ret: (N, T, C) -> fused (N, T, C), weights (N, T, 2).
    """

    def __init__(self, dim: int, hidden: int | None = None, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        hidden = hidden or max(1, dim // 4)
        self.dim = dim
        k1, b1 = torch_linear_init(2 * dim)
        k2, b2 = torch_linear_init(hidden)
        self.hidden = nnx.Linear(2 * dim, hidden, dtype=dtype, param_dtype=jnp.float32,
                                 kernel_init=k1, bias_init=b1, rngs=rngs)
        self.gate = nnx.Linear(hidden, 2, dtype=dtype, param_dtype=jnp.float32,
                               kernel_init=k2, bias_init=b2, rngs=rngs)

    def __call__(self, f_dark: jax.Array, f_ret: jax.Array) -> tuple[jax.Array, jax.Array]:
        _check_pair("TemporalDFF", f_dark, f_ret, 3, self.dim)
        logits = self.gate(jax.nn.relu(self.hidden(jnp.concatenate([f_dark, f_ret], axis=-1))))
        return gated_sum(f_dark, f_ret, logits)


def _pointwise(in_f: int, out_f: int, use_bias: bool, dtype: Any, rngs: nnx.Rngs) -> nnx.Conv:
    kernel_init, bias_init = torch_linear_init(in_f)  # torch Conv3d's default init, fan-in = in_f.
    return nnx.Conv(in_f, out_f, kernel_size=(1, 1, 1), use_bias=use_bias, dtype=dtype,
                    param_dtype=jnp.float32, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


def _bn(features: int, dtype: Any, rngs: nnx.Rngs) -> nnx.BatchNorm:
    # torch BatchNorm3d defaults (eps 1e-5, torch momentum 0.1 = Flax 0.9).
    return nnx.BatchNorm(features, epsilon=1e-5, momentum=0.9, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class _Bottleneck(nnx.Module):
    """1x1x1 conv -> BN -> ReLU -> 1x1x1 conv -> BN (an AFF attention branch).

    The convolutions have no bias: a bias right before BatchNorm is cancelled by it.
    """

    def __init__(self, channels: int, inner: int, dtype: Any, rngs: nnx.Rngs):
        self.reduce = _pointwise(channels, inner, False, dtype, rngs)
        self.reduce_bn = _bn(inner, dtype, rngs)
        self.expand = _pointwise(inner, channels, False, dtype, rngs)
        self.expand_bn = _bn(channels, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.expand_bn(self.expand(jax.nn.relu(self.reduce_bn(self.reduce(x)))))


class SpatiotemporalDFF(nnx.Module):
    """The gate as the paper's Fig. 4 draws it, on (N, T, H, W, C) backbone maps.

    X = F_dark + F_ret; local branch = bottleneck(X); global branch =
    bottleneck(mean of X over H, W); the sum feeds a 1x1x1 weighting conv with
    2 outputs, softmaxed over the streams -> weights (N, T, H, W, 2);
    fused = w_dark F_dark + w_ret F_ret.

    The global branch pools over space only, keeping T: a pool over T as well
    (as image AFF pools over its whole map) would give one context vector per
    clip and lose the per-time-step adaptivity the paper argues for.
    """

    def __init__(self, channels: int, reduction: int = 4, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        inner = max(1, channels // reduction)
        self.channels = channels
        self.local_branch = _Bottleneck(channels, inner, dtype, rngs)
        self.global_branch = _Bottleneck(channels, inner, dtype, rngs)
        self.weighting = _pointwise(channels, 2, True, dtype, rngs)

    def __call__(self, f_dark: jax.Array, f_ret: jax.Array) -> tuple[jax.Array, jax.Array]:
        _check_pair("SpatiotemporalDFF", f_dark, f_ret, 5, self.channels)
        x = f_dark + f_ret
        context = self.global_branch(einops.reduce(x, "n t h w c -> n t 1 1 c", "mean"))
        logits = self.weighting(self.local_branch(x) + context)  # context broadcasts over H, W
        return gated_sum(f_dark, f_ret, logits)


class ConcatFusion(nnx.Module):
    """Static baseline: concatenate the streams per time step, project 2C -> C."""

    def __init__(self, dim: int, *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        kernel_init, bias_init = torch_linear_init(2 * dim)
        self.dim = dim
        self.project = nnx.Linear(2 * dim, dim, dtype=dtype, param_dtype=jnp.float32,
                                  kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)

    def __call__(self, f_dark: jax.Array, f_ret: jax.Array) -> tuple[jax.Array, None]:
        _check_pair("ConcatFusion", f_dark, f_ret, 3, self.dim)
        return self.project(jnp.concatenate([f_dark, f_ret], axis=-1)), None


class SingleStream(nnx.Module):
    """Ablation without fusion: pass one stream through; the other may be None."""

    def __init__(self, which: str = "dark"):
        if which not in STREAMS:
            raise ValueError(f"SingleStream.which must be one of {STREAMS}, got {which!r}")
        self.which = which

    def __call__(self, f_dark: jax.Array | None, f_ret: jax.Array | None) -> tuple[jax.Array, None]:
        chosen = f_dark if self.which == "dark" else f_ret
        if chosen is None:
            raise ValueError(f"SingleStream({self.which!r}) got no {self.which} features")
        return chosen, None
