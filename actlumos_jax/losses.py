"""ActLumos losses: SupCon (eqs. 1-3), InfoNCE (eq. 7), CE (eq. 8), KD (eq. 9).

Every loss computes in float32 whatever the input dtype (bf16 logits or features
are upcast first) and returns a float32 scalar. ``mask`` arguments mark the valid
(non-padding) rows of a batch; a masked row takes no part in the loss at all.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _valid(mask: jax.Array | None, batch: int) -> jax.Array:
    if mask is None:
        return jnp.ones((batch,), jnp.float32)
    if mask.shape != (batch,):
        raise ValueError(f"mask must have shape ({batch},), got {mask.shape}")
    return mask.astype(jnp.float32)


def _check_batch(name: str, array: jax.Array, ndim: int, batch: int | None = None) -> None:
    if array.ndim != ndim or (batch is not None and array.shape[0] != batch):
        want = f"{ndim}-D" + ("" if batch is None else f" with {batch} rows")
        raise ValueError(f"{name} must be {want}, got shape {array.shape}")


def _l2_normalize(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def _masked_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
    return jnp.sum(values * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def supcon(
    features: jax.Array, labels: jax.Array, temperature: float = 0.1,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Supervised contrastive loss, paper eqs. (1)-(3).

    features (B, D) are L2-normalised here. For anchor i, P(i) = the other valid
    samples with label y_i, the denominator runs over every other valid sample,
    and L_i = -mean_{p in P(i)} log(exp(s_ip) / sum_{a != i} exp(s_ia)) with
    s = z.z / temperature. The result is (1/B) sum_i L_i over ALL valid anchors,
    as eq. (3): an anchor without a positive adds 0 (no NaN) but still counts in B.
    With ``mask``, B is the number of valid samples.
    """
    _check_batch("supcon features", features, 2)
    batch = features.shape[0]
    _check_batch("supcon labels", labels, 1, batch)
    valid = _valid(mask, batch)
    z = _l2_normalize(features)
    logits = z @ z.T / temperature
    # Row max without gradient, for stability; the loss is invariant to it.
    logits = logits - jax.lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
    others = (1.0 - jnp.eye(batch, dtype=jnp.float32)) * valid[None, :]
    positives = others * (labels[:, None] == labels[None, :]).astype(jnp.float32)
    # Entries are exp(<= 0) <= 1; an anchor with no valid other sample sums to 0,
    # floored so the log stays finite (it then has no positive either).
    denominator = jnp.sum(others * jnp.exp(logits), axis=1, keepdims=True)
    log_prob = logits - jnp.log(jnp.maximum(denominator, 1e-30))
    num_positives = jnp.sum(positives, axis=1)
    per_anchor = -jnp.sum(positives * log_prob, axis=1) / jnp.maximum(num_positives, 1.0)
    return _masked_mean(per_anchor, valid)


def info_nce(
    z_fast: jax.Array, z_slow: jax.Array, temperature: float = 0.1, symmetric: bool = False,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Two-view InfoNCE of the student's SSL stage, paper eq. (7).

    Anchor z_i^f, positive z_i^s; the denominator is the positive plus BOTH views
    of every other clip (z_q^f, z_q^s, q != i), so it holds every vector of the
    2B except the anchor itself. p(u, v) = exp(cos(u, v) / temperature); the
    result is the mean over clips. ``symmetric`` averages this with the same loss
    anchored on the slow views. With ``mask``, invalid (padded) clips are neither
    anchors nor negatives: the result equals the loss of the valid clips alone.
    """
    _check_batch("info_nce z_fast", z_fast, 2)
    batch = z_fast.shape[0]
    _check_batch("info_nce z_slow", z_slow, 2, batch)
    if z_slow.shape != z_fast.shape:
        raise ValueError(f"info_nce: z_fast {z_fast.shape} and z_slow {z_slow.shape} differ")
    valid = _valid(mask, batch)
    fast, slow = _l2_normalize(z_fast), _l2_normalize(z_slow)
    views = jnp.concatenate([fast, slow], axis=0)  # (2B, D): fast views, then slow views
    eye = jnp.eye(batch, dtype=bool)
    invalid_views = jnp.concatenate([valid, valid])[None, :] == 0

    def anchored(anchors, self_cols, positive_cols):
        logits = anchors @ views.T / temperature  # (B, 2B)
        # An invalid clip's views leave every denominator; each anchor keeps its own positive,
        # so a padded anchor's row stays finite (then weighted 0) and no NaN reaches a gradient.
        logits = jnp.where(self_cols | (invalid_views & ~positive_cols), -jnp.inf, logits)
        positive = jnp.sum(jnp.where(positive_cols, logits, 0.0), axis=1)
        return _masked_mean(jax.nn.logsumexp(logits, axis=1) - positive, valid)

    no_cols = jnp.zeros_like(eye)
    loss = anchored(fast, jnp.concatenate([eye, no_cols], 1), jnp.concatenate([no_cols, eye], 1))
    if symmetric:
        slow_loss = anchored(
            slow, jnp.concatenate([no_cols, eye], 1), jnp.concatenate([eye, no_cols], 1))
        loss = 0.5 * (loss + slow_loss)
    return loss


def distillation(
    student_logits: jax.Array, teacher_logits: jax.Array, temperature: float = 4.0,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Logit distillation, paper eq. (9): tau^2 KL(p_t || p_s), p = softmax(z / tau).

    Batch mean of the per-sample KL (torch's ``KLDivLoss(reduction="batchmean")``).
    The teacher gets no gradient.
    """
    _check_batch("distillation student_logits", student_logits, 2)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"distillation: teacher logits {teacher_logits.shape} do not match "
            f"student logits {student_logits.shape}")
    valid = _valid(mask, student_logits.shape[0])
    teacher = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32)
    log_p_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
    log_p_teacher = jax.nn.log_softmax(teacher / temperature)
    kl = optax.losses.kl_divergence_with_log_targets(log_p_student, log_p_teacher)
    return temperature**2 * _masked_mean(kl, valid)


def cross_entropy(
    logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None,
) -> jax.Array:
    """Softmax cross-entropy with integer labels, eq. (8), mean over valid samples.

    Labels must lie in [0, K); values cannot be checked inside jit.
    """
    _check_batch("cross_entropy logits", logits, 2)
    _check_batch("cross_entropy labels", labels, 1, logits.shape[0])
    valid = _valid(mask, logits.shape[0])
    per_sample = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return _masked_mean(per_sample, valid)


def topk_correct(
    logits: jax.Array, labels: jax.Array, k: int, mask: jax.Array | None = None,
) -> jax.Array:
    """Number of (valid) samples whose label ranks within the top k, as int32.

    Ties rank the lower class index first (the order of ``jax.lax.top_k``): the
    label's rank is the number of classes scoring strictly higher plus the
    number scoring the same with a smaller index.
    """
    _check_batch("topk_correct logits", logits, 2)
    _check_batch("topk_correct labels", labels, 1, logits.shape[0])
    if not 1 <= k:
        raise ValueError(f"topk_correct: k must be >= 1, got {k}")
    logits = logits.astype(jnp.float32)
    label_score = jnp.take_along_axis(logits, labels[:, None], axis=1)
    classes = jnp.arange(logits.shape[1])
    ahead = (logits > label_score) | ((logits == label_score) & (classes[None, :] < labels[:, None]))
    rank = jnp.sum(ahead, axis=1)
    valid = _valid(mask, logits.shape[0]) > 0
    return jnp.sum((rank < k) & valid).astype(jnp.int32)
