"""``construct`` builds a module in one compiled program with what an eager build gives: the same
parameters up to float rounding, the same random streams inside it, and the same advance of the caller's Rngs."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from actlumos_jax.models import TemporalEncoder
from actlumos_jax.models.initialize import construct
from actlumos_jax.models.r2plus1d import _bn, _conv


class Small(nnx.Module):
    """One of each initializer the models use: the backbone's conv (variance-scaling normal) and
    BatchNorm, the encoder's normal / truncated-normal / uniform ones, and Rngs streams forked inside."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = _conv(3, 6, (1, 3, 3), (1, 1, 1), (0, 1, 1), jnp.float32, rngs)
        self.bn = _bn(6, "ig65m", jnp.float32, rngs)
        self.encoder = TemporalEncoder(6, num_tokens=2, num_heads=2, mlp_dim=12, rngs=rngs)


def _rngs():
    return nnx.Rngs(3, dropout=4, mask=5)


def test_construct_equals_the_eager_build_and_advances_the_rngs_alike():
    eager_rngs, compiled_rngs = _rngs(), _rngs()
    eager, compiled = Small(eager_rngs), construct(Small, compiled_rngs)
    eager_state, compiled_state = nnx.state(eager), nnx.state(compiled)
    assert jax.tree.structure(eager_state) == jax.tree.structure(compiled_state)
    params = jax.tree.leaves(nnx.state(eager, nnx.Param))
    assert len(params) > 10 and any(float(jnp.std(p)) > 0 for p in params)
    eps = float(jnp.finfo(jnp.float32).eps)
    for a, b in zip(jax.tree.leaves(eager_state), jax.tree.leaves(compiled_state)):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        a, b = np.asarray(a), np.asarray(b)
        if np.issubdtype(a.dtype, np.floating):
            # The random bits are integer arithmetic and must match exactly; a normal sample is
            # scale * erf_inv(u), a float32 polynomial whose rounding another LLVM level may change by
            # a few ulps (level 0 does so on this CPU, 1 does not): 16 ulps of the value, or of the
            # tensor's largest value for samples near zero.
            np.testing.assert_allclose(b, a, rtol=16 * eps, atol=16 * eps * float(np.abs(a).max()))
        else:
            np.testing.assert_array_equal(a, b)
    # The caller's streams moved on by the same draws, so what it builds next is the same too.
    for stream in ("params", "dropout", "mask"):
        np.testing.assert_array_equal(jax.random.key_data(eager_rngs[stream]()),
                                      jax.random.key_data(compiled_rngs[stream]()))
    # The streams forked into the module draw the same masks in training mode.
    for _ in range(2):
        np.testing.assert_array_equal(np.asarray(eager.encoder.sample_key_mask(64)),
                                      np.asarray(compiled.encoder.sample_key_mask(64)))
