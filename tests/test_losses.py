"""ActLumos losses against plain NumPy loops over anchors and worked examples."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from actlumos_jax import losses


def normalize(v):
    return v / np.linalg.norm(v)


def log_softmax(row):
    row = np.asarray(row, np.float64)
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def supcon_reference(features, labels, tau, mask=None):
    """Eqs. (1)-(3) literally: loop over anchors, positives and denominators."""
    b = len(labels)
    valid = [True] * b if mask is None else list(mask)
    z = [normalize(np.asarray(f, np.float64)) for f in features]
    total, anchors = 0.0, 0
    for i in range(b):
        if not valid[i]:
            continue
        anchors += 1
        others = [a for a in range(b) if a != i and valid[a]]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue  # contributes 0 but still counts as an anchor (eq. 3's 1/B)
        denominator = sum(math.exp(z[i] @ z[a] / tau) for a in others)
        total += -sum(math.log(math.exp(z[i] @ z[p] / tau) / denominator)
                      for p in positives) / len(positives)
    return total / anchors


def info_nce_reference(z_fast, z_slow, tau, symmetric=False):
    """Eq. (7) literally: p(u, v) = exp(cos(u, v) / tau); mean over clips."""
    def p(u, v):
        return math.exp(normalize(u) @ normalize(v) / tau)

    def term(anchor_views, partner_views):
        b = len(anchor_views)
        total = 0.0
        for i in range(b):
            positive = p(anchor_views[i], partner_views[i])
            negatives = sum(p(anchor_views[i], view[q])
                            for q in range(b) if q != i
                            for view in (anchor_views, partner_views))
            total += -math.log(positive / (positive + negatives))
        return total / b

    z_fast, z_slow = np.asarray(z_fast, np.float64), np.asarray(z_slow, np.float64)
    loss = term(z_fast, z_slow)
    return 0.5 * (loss + term(z_slow, z_fast)) if symmetric else loss


def kd_reference(student, teacher, tau):
    total = 0.0
    for s, t in zip(student, teacher):
        log_ps, log_pt = log_softmax(np.asarray(s) / tau), log_softmax(np.asarray(t) / tau)
        total += np.sum(np.exp(log_pt) * (log_pt - log_ps))
    return tau**2 * total / len(student)


# ---------------------------------------------------------------- SupCon


def test_supcon_worked_example():
    # tau = 1, unit vectors (scaled by 3: normalisation happens inside).
    z = 3.0 * np.array([[1, 0], [1, 0], [0, 1], [-1, 0]], np.float32)
    labels = np.array([0, 0, 1, 1])
    e = math.e
    # anchors 0, 1: positive similarity 1, denominator e^1 + e^0 + e^-1
    # anchor 2: all similarities 0 -> -log(1/3); anchor 3: 0 vs {-1, -1, 0}
    want = (2 * (math.log(e + 1 + 1 / e) - 1) + math.log(3) + math.log(1 + 2 / e)) / 4
    assert want == pytest.approx(0.616317, abs=1e-6)
    got = losses.supcon(jnp.asarray(z), jnp.asarray(labels), temperature=1.0)
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_supcon_matches_loop_on_the_papers_batch():
    rng = np.random.default_rng(1)
    # n_c = 4 classes x n_v = 2 clips x {dark, retinex} = 16 vectors.
    labels = np.repeat(np.arange(4), 4)
    features = rng.normal(size=(16, 32)).astype(np.float32)
    got = losses.supcon(jnp.asarray(features), jnp.asarray(labels), temperature=0.1)
    assert float(got) == pytest.approx(supcon_reference(features, labels, 0.1), rel=1e-5)


def test_supcon_anchor_without_positive_adds_zero_and_finite_gradient():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(5, 8)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2])  # sample 4 has no positive
    loss_fn = lambda f: losses.supcon(f, jnp.asarray(labels), temperature=0.1)
    value, grad = jax.value_and_grad(loss_fn)(jnp.asarray(features))
    assert float(value) == pytest.approx(supcon_reference(features, labels, 0.1), rel=1e-5)
    assert np.all(np.isfinite(np.asarray(grad)))
    # No sample has a positive at all: exactly zero, not NaN.
    value, grad = jax.value_and_grad(
        lambda f: losses.supcon(f, jnp.arange(5), temperature=0.1))(jnp.asarray(features))
    assert float(value) == 0.0 and np.all(np.asarray(grad) == 0.0)


def test_supcon_mask_equals_dropping_the_rows():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(8, 16)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    mask = np.array([1, 1, 1, 0, 1, 1, 0, 1], bool)
    got = losses.supcon(jnp.asarray(features), jnp.asarray(labels), 0.1, mask=jnp.asarray(mask))
    dropped = losses.supcon(jnp.asarray(features[mask]), jnp.asarray(labels[mask]), 0.1)
    want = supcon_reference(features, labels, 0.1, mask)
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert float(dropped) == pytest.approx(want, rel=1e-5)
    # And the mask is not a no-op on this batch.
    assert abs(supcon_reference(features, labels, 0.1) - want) > 1e-3


# ---------------------------------------------------------------- InfoNCE


def test_info_nce_worked_example():
    z_fast = np.array([[1, 0], [0, 1]], np.float32)
    z_slow = np.array([[1, 0], [-1, 0]], np.float32) * 2.0
    e = math.e
    # f0: positive s0 (cos 1), others f1 (0), s1 (-1); f1: positive s1 (0), f0 (0), s0 (0)
    fast_term = (math.log(e + 1 + 1 / e) - 1 + math.log(3)) / 2
    # s0: positive f0 (1), f1 (0), s1 (-1); s1: positive f1 (0), f0 (-1), s0 (-1)
    slow_term = (math.log(e + 1 + 1 / e) - 1 + math.log(1 + 2 / e)) / 2
    got = losses.info_nce(jnp.asarray(z_fast), jnp.asarray(z_slow), temperature=1.0)
    assert float(got) == pytest.approx(fast_term, rel=1e-6)
    got = losses.info_nce(jnp.asarray(z_fast), jnp.asarray(z_slow), 1.0, symmetric=True)
    assert float(got) == pytest.approx((fast_term + slow_term) / 2, rel=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_matches_eq7_loop(symmetric):
    rng = np.random.default_rng(4)
    z_fast = rng.normal(size=(6, 16)).astype(np.float32)
    z_slow = (z_fast + 3.0 * rng.normal(size=(6, 16))).astype(np.float32)
    got = losses.info_nce(jnp.asarray(z_fast), jnp.asarray(z_slow), 0.1, symmetric=symmetric)
    want = info_nce_reference(z_fast, z_slow, 0.1, symmetric)
    # Float32 logits of size 1/tau = 10 leave ~1e-6 absolute after log-sum-exp.
    assert want > 0.1  # views far enough apart that the loss is not ~0
    assert float(got) == pytest.approx(want, rel=1e-5, abs=2e-6)


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_mask_equals_dropping_the_clips(symmetric):
    # The SSL validation loss of a padded last batch: the padded clips must count for nothing.
    rng = np.random.default_rng(8)
    z_fast = rng.normal(size=(6, 16)).astype(np.float32)
    z_slow = (z_fast + 3.0 * rng.normal(size=(6, 16))).astype(np.float32)
    mask = np.array([True, False, True, True, False, True])
    fn = lambda a, b, m: losses.info_nce(a, b, 0.1, symmetric=symmetric, mask=m)
    got = fn(jnp.asarray(z_fast), jnp.asarray(z_slow), jnp.asarray(mask))
    want = info_nce_reference(z_fast[mask], z_slow[mask], 0.1, symmetric)
    assert float(got) == pytest.approx(want, rel=1e-5, abs=2e-6)
    assert abs(info_nce_reference(z_fast, z_slow, 0.1, symmetric) - want) > 1e-3
    grads = jax.grad(fn, argnums=(0, 1))(jnp.asarray(z_fast), jnp.asarray(z_slow), jnp.asarray(mask))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g)[~mask] == 0)


def test_info_nce_gradient_is_finite():
    rng = np.random.default_rng(5)
    z = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
    grads = jax.grad(lambda a, b: losses.info_nce(a, b, symmetric=True), argnums=(0, 1))(z, z * 2)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


# ---------------------------------------------------------------- KD, CE, top-k


def test_distillation_matches_direct_kl():
    rng = np.random.default_rng(6)
    student = rng.normal(size=(5, 11)).astype(np.float32) * 3
    teacher = rng.normal(size=(5, 11)).astype(np.float32) * 3
    got = losses.distillation(jnp.asarray(student), jnp.asarray(teacher), temperature=4.0)
    assert float(got) == pytest.approx(kd_reference(student, teacher, 4.0), rel=1e-5)
    same = losses.distillation(jnp.asarray(teacher), jnp.asarray(teacher), temperature=4.0)
    assert abs(float(same)) < 1e-6


def test_distillation_mask_and_teacher_gets_no_gradient():
    rng = np.random.default_rng(7)
    student = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    teacher = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    mask = jnp.array([True, False, True, True])
    got = losses.distillation(student, teacher, 4.0, mask=mask)
    want = kd_reference(np.asarray(student)[[0, 2, 3]], np.asarray(teacher)[[0, 2, 3]], 4.0)
    assert float(got) == pytest.approx(want, rel=1e-5)
    g_student, g_teacher = jax.grad(losses.distillation, argnums=(0, 1))(student, teacher)
    assert np.all(np.asarray(g_teacher) == 0.0)
    assert np.abs(np.asarray(g_student)).max() > 1e-3


def test_cross_entropy_matches_loop_with_mask():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(6, 11)).astype(np.float32) * 4
    labels = np.array([0, 3, 10, 3, 7, 1])
    mask = np.array([1, 1, 0, 1, 1, 0], bool)
    want = np.mean([-log_softmax(logits[i])[labels[i]] for i in range(6) if mask[i]])
    got = losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
    assert float(got) == pytest.approx(want, rel=1e-5)
    full = np.mean([-log_softmax(logits[i])[labels[i]] for i in range(6)])
    assert float(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))) == pytest.approx(
        full, rel=1e-5)


def test_topk_correct_matches_stable_sort_with_ties():
    rng = np.random.default_rng(9)
    logits = rng.integers(0, 4, size=(40, 7)).astype(np.float32)  # many ties
    labels = rng.integers(0, 7, size=40)
    for k in (1, 3, 5):
        want = 0
        for row, label in zip(logits, labels):
            order = np.argsort(-row, kind="stable")  # lower index first among equals
            want += int(label in order[:k])
        got = losses.topk_correct(jnp.asarray(logits), jnp.asarray(labels), k)
        assert int(got) == want
        _, top = jax.lax.top_k(jnp.asarray(logits), k)
        assert want == int(np.sum(np.any(np.asarray(top) == labels[:, None], axis=1)))
    mask = np.arange(40) < 25
    got = losses.topk_correct(jnp.asarray(logits), jnp.asarray(labels), 1, jnp.asarray(mask))
    want = sum(int(np.argsort(-logits[i], kind="stable")[0] == labels[i]) for i in range(25))
    assert int(got) == want


# ---------------------------------------------------------------- stability and dtypes


def test_large_logits_stay_finite():
    rng = np.random.default_rng(10)
    big = jnp.asarray(rng.normal(size=(4, 11)) * 1e4, jnp.float32)
    other = jnp.asarray(rng.normal(size=(4, 11)) * 1e4, jnp.float32)
    labels = jnp.array([0, 1, 0, 1])
    values = [
        losses.distillation(big, other),
        losses.cross_entropy(big, labels),
        losses.supcon(big, labels, temperature=0.01),
        losses.info_nce(big, other, temperature=0.01, symmetric=True),
    ]
    assert all(np.isfinite(float(v)) for v in values)
    grads = [
        jax.grad(losses.distillation)(big, other),
        jax.grad(losses.cross_entropy)(big, labels),
        jax.grad(lambda f: losses.supcon(f, labels, 0.01))(big),
    ]
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    # With logits 1e4 apart the teacher is one-hot: KD = tau^2 (-log p_s[argmax t]).
    student = np.asarray(big, np.float64)
    top = np.argmax(np.asarray(other), axis=1)
    want = 16.0 * np.mean([-log_softmax(student[i] / 4)[top[i]] for i in range(4)])
    assert float(values[0]) == pytest.approx(want, rel=1e-4)


def test_bf16_inputs_are_computed_in_float32():
    rng = np.random.default_rng(11)
    features = rng.normal(size=(8, 16))
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    logits_s = rng.normal(size=(8, 11)) * 5
    logits_t = rng.normal(size=(8, 11)) * 5
    cases = [
        (lambda f: losses.supcon(f, jnp.asarray(labels)), (features,),
         lambda f: supcon_reference(f, labels, 0.1)),
        (lambda a, b: losses.info_nce(a, b), (features[:4], features[4:]),
         lambda a, b: info_nce_reference(a, b, 0.1)),
        (lambda s, t: losses.distillation(s, t), (logits_s, logits_t),
         lambda s, t: kd_reference(s, t, 4.0)),
        (lambda s: losses.cross_entropy(s, jnp.asarray(labels)), (logits_s,),
         lambda s: np.mean([-log_softmax(s[i])[labels[i]] for i in range(8)])),
    ]
    for loss_fn, args, reference in cases:
        bf16_args = [jnp.asarray(a, jnp.bfloat16) for a in args]
        got = loss_fn(*bf16_args)
        assert got.dtype == jnp.float32
        # Exact inputs the bf16 arrays hold, computed in float64: a float32 interior
        # agrees to ~1e-6; a bf16 interior would be off by ~1e-2.
        rounded = [np.asarray(a, np.float64) for a in bf16_args]
        assert float(got) == pytest.approx(reference(*rounded), rel=2e-5)
        # And close to the un-rounded float32 result.
        f32 = loss_fn(*[jnp.asarray(a, jnp.float32) for a in args])
        assert float(got) == pytest.approx(float(f32), rel=3e-2)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="supcon labels must be 1-D with 4 rows"):
        losses.supcon(jnp.zeros((4, 8)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="z_fast .* and z_slow .* differ"):
        losses.info_nce(jnp.zeros((4, 8)), jnp.zeros((4, 9)))
    with pytest.raises(ValueError, match="teacher logits"):
        losses.distillation(jnp.zeros((4, 8)), jnp.zeros((4, 9)))
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        losses.cross_entropy(jnp.zeros((4, 8)), jnp.zeros((4,), jnp.int32), jnp.ones((5,)))
