"""TemporalEncoder against an independent NumPy transformer (float64 loops)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.models.encoder import ReferenceLayerNorm, TemporalEncoder

DIM, TOKENS, HEADS, MLP, BATCH = 32, 4, 4, 64, 3


def rngs(seed=0):
    # rbg keys compile far faster than threefry on CPU; init values do not matter here.
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def make_encoder(seed=0, **kwargs):
    args = dict(dim=DIM, num_tokens=TOKENS, num_heads=HEADS, mlp_dim=MLP)
    args.update(kwargs)
    return TemporalEncoder(**args, rngs=rngs(seed))


def randomise_layernorms(encoder, seed=1):
    """LayerNorm scale/bias start at 1/0; give them values so the test sees them."""
    rng = np.random.default_rng(seed)
    for block in encoder.blocks:
        for norm in (block.attention_norm, block.mlp_norm):
            norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, DIM), jnp.float32)
            norm.bias[...] = jnp.asarray(rng.normal(0, 0.1, DIM), jnp.float32)


def np64(p):
    return np.asarray(p[...], np.float64)


def np_layernorm(x, norm, kind):
    mean = x.mean(-1, keepdims=True)
    if kind == "reference":
        y = (x - mean) / (x.std(-1, ddof=1, keepdims=True) + 1e-6)
    else:
        y = (x - mean) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    return np64(norm.scale) * y + np64(norm.bias)


def np_block(x, block, kind, key_mask):
    """One pre-LN block, eval mode, written with explicit loops over batch, heads, queries."""
    att = block.attention
    h = np_layernorm(x, block.attention_norm, kind)
    n, length, dim = x.shape
    head_dim = dim // HEADS
    q = np.einsum("nlc,chd->nlhd", h, np64(att.query.kernel)) + np64(att.query.bias)
    k = np.einsum("nlc,chd->nlhd", h, np64(att.key.kernel)) + np64(att.key.bias)
    v = np.einsum("nlc,chd->nlhd", h, np64(att.value.kernel)) + np64(att.value.bias)
    heads_out = np.zeros((n, length, HEADS, head_dim))
    for b in range(n):
        for hd in range(HEADS):
            for i in range(length):
                scores = np.array([q[b, i, hd] @ k[b, j, hd] for j in range(length)]) / math.sqrt(head_dim)
                scores = np.where(key_mask[b], scores, -np.inf)
                p = np.exp(scores - scores.max())
                p /= p.sum()
                heads_out[b, i, hd] = sum(p[j] * v[b, j, hd] for j in range(length))
    attn = np.einsum("nlhd,hdc->nlc", heads_out, np64(att.out.kernel)) + np64(att.out.bias)
    x = x + attn
    h = np_layernorm(x, block.mlp_norm, kind)
    u = h @ np64(block.mlp.fc1.kernel) + np64(block.mlp.fc1.bias)
    gelu = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
    return x + gelu @ np64(block.mlp.fc2.kernel) + np64(block.mlp.fc2.bias)


def np_encoder(tokens, encoder, kind, key_mask=None):
    n = tokens.shape[0]
    if key_mask is None:
        key_mask = np.ones((n, TOKENS + 1), bool)
    cls = np.broadcast_to(np64(encoder.cls_token), (n, 1, DIM))
    x = np.concatenate([cls, np.asarray(tokens, np.float64)], 1) + np64(encoder.position_embedding)
    for block in encoder.blocks:
        x = np_block(x, block, kind, key_mask)
    return x


def tokens_(seed=0, n=BATCH):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, TOKENS, DIM)), jnp.float32)


@pytest.mark.parametrize("kind", ["standard", "reference"])
def test_eval_matches_numpy_pre_ln_blocks(kind):
    encoder = make_encoder(num_layers=2, layernorm=kind)
    randomise_layernorms(encoder)
    encoder.eval()
    x = tokens_()
    out = encoder(x)
    assert out.shape == (BATCH, TOKENS + 1, DIM) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, np_encoder(x, encoder, kind), rtol=2e-4, atol=2e-4)


def test_reference_layernorm_uses_unbiased_std():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(5, 7)).astype(np.float32)
    norm = ReferenceLayerNorm(7, rngs=rngs())
    norm.scale[...] = jnp.arange(1.0, 8.0)
    norm.bias[...] = jnp.full((7,), 0.5)
    want = np.arange(1, 8) * (x - x.mean(-1, keepdims=True)) / (x.std(-1, ddof=1, keepdims=True) + 1e-6) + 0.5
    np.testing.assert_allclose(norm(jnp.asarray(x)), want, rtol=1e-5, atol=1e-5)
    # The biased std gives visibly different numbers at this width.
    biased = np.arange(1, 8) * (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-6) + 0.5
    assert np.abs(biased - want).max() > 0.05


def test_explicit_key_mask_removes_key_from_attention():
    encoder = make_encoder(layernorm="reference")
    randomise_layernorms(encoder)
    encoder.eval()
    x = tokens_()
    key_mask = np.ones((BATCH, TOKENS + 1), bool)
    key_mask[:, 2] = False  # frame token 1 (sequence index 2) may not be attended to
    out = encoder(x, key_mask=jnp.asarray(key_mask))
    np.testing.assert_allclose(out, np_encoder(x, encoder, "reference", key_mask), rtol=2e-4, atol=2e-4)
    # A masked key gets zero attention: changing that token changes nothing but its own row.
    # Not a constant shift: LayerNorm would erase that before attention.
    perturbed = x.at[:, 1].add(jnp.asarray(np.random.default_rng(9).normal(0, 3, (BATCH, DIM)), jnp.float32))
    out2 = encoder(perturbed, key_mask=jnp.asarray(key_mask))
    others = [0, 1, 3, 4]
    np.testing.assert_allclose(out2[:, others], out[:, others], rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(out2[:, 2] - out[:, 2])).max() > 0.1
    # Unmasked, the same change reaches [CLS].
    out3 = encoder(perturbed)
    assert np.abs(np.asarray(out3[:, 0] - encoder(x)[:, 0])).max() > 1e-3


def test_training_key_mask_statistics_and_cls_always_kept():
    encoder = make_encoder(key_keep_prob=0.7)
    mask = np.asarray(encoder.sample_key_mask(4000))
    assert mask.shape == (4000, TOKENS + 1)
    assert mask[:, 0].all()
    assert abs(mask[:, 1:].mean() - 0.7) < 0.02
    assert not mask[:, 1:].all()


def test_training_forward_uses_sampled_mask_and_eval_keeps_all():
    encoder = make_encoder(dropout=0.0, attention_dropout=0.0, key_keep_prob=0.5)
    x = tokens_(n=8)
    encoder.train()
    # A clone of the RNG state draws the same mask the forward pass will draw.
    expected_mask = np.asarray(nnx.clone(encoder).sample_key_mask(8))
    assert not expected_mask.all()
    out = encoder(x)
    np.testing.assert_allclose(out, np_encoder(x, encoder, "standard", expected_mask), rtol=2e-4, atol=2e-4)
    encoder.eval()
    np.testing.assert_allclose(encoder(x), np_encoder(x, encoder, "standard"), rtol=2e-4, atol=2e-4)


def test_dropout_only_in_training():
    encoder = make_encoder(key_keep_prob=1.0)
    x = tokens_()
    encoder.eval()
    np.testing.assert_array_equal(encoder(x), encoder(x))
    encoder.train()
    a, b = encoder(x), encoder(x)
    assert np.abs(np.asarray(a - b)).max() > 1e-3


def test_init_statistics():
    encoder = make_encoder(dim=256, num_tokens=15, num_heads=8, mlp_dim=512)
    for p, size in ((encoder.cls_token, 256), (encoder.position_embedding, 16 * 256)):
        values = np.asarray(p[...])
        assert values.size == size
        assert abs(values.std() - 0.02) < 0.02 * 5 / math.sqrt(size) + 1e-3


def test_bfloat16_compute_with_float32_params():
    x = tokens_()
    ref = make_encoder(seed=3)
    ref.eval()
    half = make_encoder(seed=3, dtype=jnp.bfloat16)
    half.eval()
    params = nnx.state(half, nnx.Param)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    out = half(x)
    assert out.dtype == jnp.bfloat16
    want = np.asarray(ref(x))
    np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=0.1 * np.abs(want).max())


def test_shape_errors_name_the_problem():
    encoder = make_encoder()
    with pytest.raises(ValueError, match="num_tokens"):
        encoder(jnp.zeros((2, TOKENS + 1, DIM)))
    with pytest.raises(ValueError, match=r"\(N, 4, 32\)"):
        encoder(jnp.zeros((2, TOKENS, DIM + 1)))
    with pytest.raises(ValueError, match="layernorm"):
        make_encoder(layernorm="rms")
    with pytest.raises(ValueError, match="divisible"):
        make_encoder(num_heads=5)


def test_key_mask_rng_stream_choice():
    def key(seed):
        return jax.random.key(seed, impl="rbg")

    for streams, tag in (
        (dict(default=key(0), dropout=key(1), mask=key(2)), "mask"),
        (dict(default=key(0)), "default"),
        (dict(params=key(0), dropout=key(1)), "dropout"),
    ):
        encoder = TemporalEncoder(DIM, TOKENS, num_heads=HEADS, mlp_dim=MLP, rngs=nnx.Rngs(**streams))
        assert encoder.key_mask_rngs.tag == tag
