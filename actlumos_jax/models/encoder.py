"""BERT-style temporal encoder over per-time-step backbone tokens (Flax NNX).

Follows the one-layer encoder the dark-video methods inherit from the late
temporal modelling work (see FACTS.md, "The temporal encoder"):

  [CLS] + tokens -> + positional embedding -> dropout
  -> pre-LN blocks: x + drop(MHA(LN(x))); x + drop(FFN(LN(x))); drop(x)
  (no final LayerNorm).

The reference also drops out inside the FFN (after the GELU) and after each
block; both are kept here so "dropout 0.1 throughout" means the same thing.
In training each frame token is kept as an attention key with probability
``key_keep_prob``; the [CLS] key is always kept, so no query row is empty.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

LAYERNORMS = ("standard", "reference")


def torch_linear_init(fan_in: int):
    """(kernel_init, bias_init) of torch's nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The reference encoder keeps torch's default Linear init; kaiming-uniform with
    a=sqrt(5) is variance scaling 1/3 on fan-in, uniform.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def bias_init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), bias_init


def _linear(in_f: int, out_f: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    kernel_init, bias_init = torch_linear_init(in_f)
    return nnx.Linear(in_f, out_f, dtype=dtype, param_dtype=jnp.float32,
                      kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class ReferenceLayerNorm(nnx.Module):
    """``a * (x - mean) / (std + eps) + b`` with the UNBIASED std (the reference's LayerNorm).

    Differs from the standard LayerNorm, which divides by sqrt(biased var + eps).
    Statistics are computed in float32 whatever the compute dtype.
    """

    def __init__(self, dim: int, *, epsilon: float = 1e-6, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        del rngs  # deterministic init: a = 1, b = 0.
        if dim < 2:
            raise ValueError(f"ReferenceLayerNorm needs dim >= 2 for an unbiased std, got {dim}")
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))
        self.epsilon = epsilon
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        std = jnp.std(x32, axis=-1, keepdims=True, ddof=1)
        y = self.scale[...] * (x32 - mean) / (std + self.epsilon) + self.bias[...]
        return y.astype(self.dtype)


def _layernorm(kind: str, dim: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Module:
    if kind == "reference":
        return ReferenceLayerNorm(dim, dtype=dtype, rngs=rngs)
    if kind == "standard":
        return nnx.LayerNorm(dim, epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
    raise ValueError(f"layernorm must be one of {LAYERNORMS}, got {kind!r}")


class FeedForward(nnx.Module):
    """Linear -> tanh-approximate GELU -> dropout -> Linear."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float, dtype: Any, rngs: nnx.Rngs):
        self.fc1 = _linear(dim, mlp_dim, dtype, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fc2 = _linear(mlp_dim, dim, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.dropout(jax.nn.gelu(self.fc1(x), approximate=True)))


class EncoderBlock(nnx.Module):
    """Pre-LN transformer block: x + drop(MHA(LN(x))), x + drop(FFN(LN(x))), then drop."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float,
                 attention_dropout: float, layernorm: str, dtype: Any, rngs: nnx.Rngs):
        kernel_init, bias_init = torch_linear_init(dim)
        self.attention_norm = _layernorm(layernorm, dim, dtype, rngs)
        self.attention = nnx.MultiHeadAttention(
            num_heads, dim, dtype=dtype, param_dtype=jnp.float32,
            kernel_init=kernel_init, bias_init=bias_init,
            # The reference drops attention probabilities elementwise, not one
            # mask shared over batch and heads.
            broadcast_dropout=False, dropout_rate=attention_dropout,
            deterministic=False, decode=False, rngs=rngs,
        )
        self.attention_dropout = nnx.Dropout(dropout, rngs=rngs)
        self.mlp_norm = _layernorm(layernorm, dim, dtype, rngs)
        self.mlp = FeedForward(dim, mlp_dim, dropout, dtype, rngs)
        self.mlp_dropout = nnx.Dropout(dropout, rngs=rngs)
        self.output_dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        x = x + self.attention_dropout(self.attention(self.attention_norm(x), mask=mask))
        x = x + self.mlp_dropout(self.mlp(self.mlp_norm(x)))
        return self.output_dropout(x)


class TemporalEncoder(nnx.Module):
    """[CLS] + learned positions + pre-LN transformer over (N, T, C) tokens.

    ``__call__(tokens)`` returns the encoded (N, T+1, C) sequence, [CLS] at index 0.
    Random key masking runs only while ``deterministic`` is False (``model.train()``)
    and draws from the Rngs stream "mask" (else "default", else "dropout").
    """

    def __init__(
        self,
        dim: int = 512,
        num_tokens: int = 8,
        num_layers: int = 1,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        key_keep_prob: float = 0.8,
        layernorm: str = "standard",
        *,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ValueError(f"TemporalEncoder dim {dim} is not divisible by num_heads {num_heads}")
        if not 0.0 < key_keep_prob <= 1.0:
            raise ValueError(f"TemporalEncoder key_keep_prob must be in (0, 1], got {key_keep_prob}")
        if layernorm not in LAYERNORMS:
            raise ValueError(f"layernorm must be one of {LAYERNORMS}, got {layernorm!r}")
        self.dim = dim
        self.num_tokens = num_tokens
        self.key_keep_prob = key_keep_prob
        self.dtype = dtype
        self.deterministic = False
        init = nnx.initializers.normal(0.02)
        self.cls_token = nnx.Param(init(rngs.params(), (1, 1, dim), jnp.float32))
        self.position_embedding = nnx.Param(init(rngs.params(), (1, num_tokens + 1, dim), jnp.float32))
        self.embedding_dropout = nnx.Dropout(dropout, rngs=rngs)
        self.blocks = nnx.List([
            EncoderBlock(dim, num_heads, mlp_dim, dropout, attention_dropout, layernorm, dtype, rngs)
            for _ in range(num_layers)
        ])
        # Own "mask" stream if the caller made one; else Rngs' default / dropout stream.
        stream = "mask" if ("mask" in rngs or "default" in rngs) else "dropout"
        self.key_mask_rngs = rngs[stream].fork()

    def set_view(self, deterministic: bool | None = None):
        """Lets ``nnx.view(model, deterministic=...)`` switch key masking too."""
        if deterministic is not None:
            self.deterministic = deterministic

    def sample_key_mask(self, batch: int) -> jax.Array:
        """(batch, T+1) booleans: which tokens may be attended to. [CLS] always True."""
        frames = jax.random.bernoulli(self.key_mask_rngs(), self.key_keep_prob, (batch, self.num_tokens))
        return jnp.concatenate([jnp.ones((batch, 1), bool), frames], axis=1)

    def __call__(self, tokens: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        """Encodes (N, T, C) tokens.

        ``key_mask`` (N, T+1) bool, if given, replaces the random training mask
        (True = may be attended to); it is applied in eval mode too.
        """
        if tokens.ndim != 3 or tokens.shape[1:] != (self.num_tokens, self.dim):
            raise ValueError(
                f"TemporalEncoder expects tokens of shape (N, {self.num_tokens}, {self.dim}) "
                f"(num_tokens, dim), got {tokens.shape}"
            )
        batch = tokens.shape[0]
        if key_mask is None and not self.deterministic and self.key_keep_prob < 1.0:
            key_mask = self.sample_key_mask(batch)
        mask = None
        if key_mask is not None:
            if key_mask.shape != (batch, self.num_tokens + 1):
                raise ValueError(f"key_mask must have shape {(batch, self.num_tokens + 1)}, got {key_mask.shape}")
            mask = key_mask[:, None, None, :]  # (N, heads, queries, keys) by broadcasting
        cls = jnp.broadcast_to(self.cls_token[...], (batch, 1, self.dim))
        x = jnp.concatenate([cls, tokens.astype(jnp.float32)], axis=1) + self.position_embedding[...]
        x = self.embedding_dropout(x.astype(self.dtype))
        for block in self.blocks:
            x = block(x, mask)
        return x
