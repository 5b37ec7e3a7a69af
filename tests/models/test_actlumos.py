"""Teacher / Student: shapes, weight sharing, modes, jit round trips, counts, config, pretrained load."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from actlumos_jax.models.actlumos import copy_batch_stats
from actlumos_jax.models import (
    FUSIONS, R2Plus1D, R2Plus1DSpec, Student, Teacher, build_model, default_model_config,
    inference_parameter_count, load_pretrained_backbone, parameter_count,
)

N, K, FRAMES, SIZE = 2, 5, 16, 32  # 16 frames -> 2 tokens; 32x32 -> 2x2 map
DIM = 64  # width 0.125 of 512


def tiny_config(**overrides):
    config = default_model_config()
    config.backbone.depth = 10
    config.backbone.width = 0.125
    config.encoder.num_heads = 4
    config.fusion_hidden = 16
    config.num_frames = FRAMES
    config.projection_dim = 8
    config.update(overrides)
    return config


def materialize(abstract, seed):
    """Fills an ``nnx.eval_shape`` model with NumPy draws.

    The real initialisers compile one XLA program per tensor shape (the backbone's
    normal initialiser alone costs ~10 s of CPU to compile); the tests here are
    about wiring, not init, so any well-scaled values do. Real init is exercised
    by test_encoder.py / test_fusion.py.
    """
    rng = np.random.default_rng(seed)

    def fill(path, x):
        name = str(next(k.key for k in reversed(path) if isinstance(k, jax.tree_util.DictKey)))
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key(int(rng.integers(2**31)), impl="rbg")
        if name == "count":
            return jnp.zeros(x.shape, x.dtype)
        if name in ("mean", "var"):  # BatchNorm statistics
            values = rng.normal(0, 0.1, x.shape) if name == "mean" else rng.uniform(0.5, 1.5, x.shape)
        elif name == "scale":
            values = rng.uniform(0.8, 1.2, x.shape)
        elif name == "bias":
            values = rng.normal(0, 0.02, x.shape)
        else:
            fan_in = int(np.prod(x.shape[:-1])) or 1
            values = rng.normal(0, 1 / np.sqrt(fan_in), x.shape)
        return jnp.asarray(values, x.dtype)

    graphdef, state = nnx.split(abstract)
    return nnx.merge(graphdef, jax.tree.map_with_path(fill, state))


def build(kind="teacher", seed=0, **overrides):
    config = tiny_config(**overrides)
    abstract = nnx.eval_shape(lambda: build_model(config, K, kind=kind, rngs=nnx.Rngs(jax.random.key(0, impl="rbg"))))
    return materialize(abstract, seed)


def clip(seed, frames=FRAMES):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (N, frames, SIZE, SIZE, 3)), jnp.float32)


DARK, RETINEX = clip(1), clip(2)


@pytest.mark.parametrize("fusion, weights_shape", [
    ("dff_temporal", (N, 2, 2)),
    ("dff_spatiotemporal", (N, 2, 2, 2, 2)),
    ("concat", None),
])
def test_teacher_shapes(fusion, weights_shape):
    teacher = build(fusion=fusion)
    teacher.eval()
    out = teacher(DARK, RETINEX)
    assert out.logits.shape == (N, K) and out.logits.dtype == jnp.float32
    assert out.embed_dark.shape == (N, DIM) and out.embed_retinex.shape == (N, DIM)
    if weights_shape is None:
        assert out.gate_weights is None
    else:
        assert out.gate_weights.shape == weights_shape
        np.testing.assert_allclose(np.asarray(out.gate_weights).sum(-1), 1.0, rtol=1e-6)


def test_student_shapes_and_error_on_wrong_frame_count():
    student = build("student")
    student.eval()
    out = student(DARK)
    assert (out.logits.shape, out.cls.shape, out.projection.shape) == ((N, K), (N, DIM), (N, 8))
    with pytest.raises(ValueError, match="num_tokens"):  # traced only: no compile of 8-frame ops
        jax.eval_shape(student, jax.ShapeDtypeStruct((N, 8, SIZE, SIZE, 3), jnp.float32))


@pytest.mark.parametrize("stream_norm", ["joint", "per_stream", "separate"])
def test_teacher_streams_share_one_backbone(stream_norm):
    teacher = build(stream_norm=stream_norm)
    if stream_norm == "per_stream":  # the same statistics for both streams, so swapping them is symmetric
        copy_batch_stats(teacher.backbone, teacher.retinex_backbone)
    teacher.eval()
    # One backbone's parameters, not two.
    expected = sum(parameter_count(m) for m in (teacher.backbone, teacher.fusion, teacher.encoder, teacher.head))
    assert parameter_count(teacher) == expected
    a, b = teacher(DARK, RETINEX), teacher(RETINEX, DARK)
    np.testing.assert_allclose(a.embed_dark, b.embed_retinex, rtol=1e-6)
    np.testing.assert_allclose(a.embed_retinex, b.embed_dark, rtol=1e-6)
    # The embedding is the backbone map averaged over T, H, W (not normalised).
    pooled = np.asarray(teacher.backbone.features(DARK)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(a.embed_dark, pooled, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.linalg.norm(pooled, axis=-1), 1.0)


def _embeddings(teacher, dark, retinex, train: bool):
    out = teacher.train() if train else teacher.eval()
    del out
    result = teacher(dark, retinex)
    return np.asarray(result.embed_dark), np.asarray(result.embed_retinex)


@pytest.mark.parametrize("stream_norm", ["joint", "per_stream", "separate"])
def test_train_mode_statistics_of_each_stream_norm(stream_norm):
    teacher = build(stream_norm=stream_norm)
    twin = nnx.clone(teacher)
    twin.train()
    before = np.asarray(teacher.backbone.stem.spatial_bn.mean[...])
    dark, ret = _embeddings(teacher, DARK, RETINEX, train=True)
    assert np.abs(np.asarray(teacher.backbone.stem.spatial_bn.mean[...]) - before).max() > 0
    alone = np.asarray(twin.backbone.features(DARK)).mean(axis=(1, 2, 3))
    pair = np.asarray(twin.backbone.features(jnp.concatenate([DARK, RETINEX]))).mean(axis=(1, 2, 3))
    # Two calls: the dark embedding is what the dark batch alone gives, whatever the retinex clip;
    # one joint call: it is the dark half of the pair's, and another retinex clip moves it.
    want = pair[:N] if stream_norm == "joint" else alone
    np.testing.assert_allclose(dark, want, rtol=1e-5, atol=1e-6)
    other_dark, other_ret = _embeddings(teacher, DARK, clip(7), train=True)
    moved = np.abs(other_dark - dark).max()
    assert moved > 1e-3 if stream_norm == "joint" else moved < 1e-5
    assert np.abs(other_ret - ret).max() > 1e-3
    if stream_norm == "per_stream":  # the dark statistics are not touched by the retinex call
        assert teacher.retinex_backbone.stem.spatial.kernel is teacher.backbone.stem.spatial.kernel
        assert parameter_count(teacher) == parameter_count(build(stream_norm="joint"))


@pytest.mark.parametrize("stream_norm", ["joint", "per_stream", "separate"])
def test_evaluation_mode_computes_what_training_did(stream_norm):
    # Train-mode calls on one fixed pair of batches until BatchNorm's running averages settle
    # (IG-65M momentum: the running value keeps 10 % of itself per update, 0.1^12 ~ 1e-12).
    # Evaluation on the same clips must then give the embeddings training gave: only the
    # separate form, whose two calls blend one set of averages, does not.
    teacher = build(stream_norm=stream_norm)
    teacher.train()
    graphdef, state = nnx.split(teacher)

    @jax.jit
    def settle(state):
        model = nnx.merge(graphdef, state, copy=True)
        model(DARK, RETINEX)
        return nnx.state(model)

    for _ in range(12):
        state = settle(state)
    teacher = nnx.merge(graphdef, state)
    train_dark, train_ret = _embeddings(teacher, DARK, RETINEX, train=True)
    eval_dark, eval_ret = _embeddings(teacher, DARK, RETINEX, train=False)
    # Relative to the embeddings' scale: float32 batch moments of O(1) activations settle to a
    # few ulps (~1e-7), and 10 BatchNorm layers compound that to well under 1e-4.
    scale = np.abs(np.concatenate([train_dark, train_ret])).max()
    error = max(np.abs(eval_dark - train_dark).max(), np.abs(eval_ret - train_ret).max()) / scale
    if stream_norm == "separate":
        assert error > 0.05, f"the blended statistics should have shown, relative error {error:.2e}"
    else:
        assert error < 1e-4, f"evaluation differs from training by {error:.2e} of the embedding scale"


def test_single_stream_teachers_ignore_the_other_stream():
    dark_only = build(fusion="dark_only")
    dark_only.eval()
    a = dark_only(DARK, RETINEX)
    b = dark_only(DARK, clip(7))
    c = dark_only(DARK, None)
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.logits, c.logits)
    assert a.embed_retinex is None and a.gate_weights is None
    retinex_only = build(fusion="retinex_only")
    retinex_only.eval()
    np.testing.assert_array_equal(retinex_only(None, RETINEX).logits, retinex_only(DARK, RETINEX).logits)
    with pytest.raises(ValueError, match="needs the retinex clip"):
        retinex_only(DARK, None)


def test_split_merge_round_trip_under_jit():
    # The spatio-temporal DFF teacher has every kind of state: BN in backbone and
    # fusion, dropout and key-masking RNG streams.
    model = build(fusion="dff_spatiotemporal")
    model.eval()
    eager = model(DARK, RETINEX)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def forward(params, rest, dark, retinex):
        return nnx.merge(graphdef, params, rest)(dark, retinex)

    jitted = forward(params, rest, DARK, RETINEX)
    for e, j in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(e, j, rtol=1e-5, atol=1e-5)

    # Train mode under jit: dropout/key masking draw from the RNG state, BN stats move.
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def train_forward(params, rest, dark, retinex):
        m = nnx.merge(graphdef, params, rest)
        out = m(dark, retinex)
        return out, nnx.state(m, nnx.Not(nnx.Param))

    out, new_rest = train_forward(params, rest, DARK, RETINEX)
    assert np.isfinite(np.asarray(out.logits)).all()
    for module in ("backbone", "fusion"):
        bn = "stem" if module == "backbone" else "local_branch"
        key = "spatial_bn" if module == "backbone" else "reduce_bn"
        old_mean = rest[module][bn][key]["mean"][...]
        new_mean = new_rest[module][bn][key]["mean"][...]
        assert np.abs(np.asarray(new_mean - old_mean)).max() > 0
    out2, _ = train_forward(params, new_rest, DARK, RETINEX)
    assert np.abs(np.asarray(out2.logits - out.logits)).max() > 0  # fresh dropout draws


def test_bfloat16_logits_close_to_float32():
    ref, half = build("student", seed=3), build("student", seed=3, dtype="bfloat16")
    ref.eval()
    half.eval()
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(half, nnx.Param)))
    # Under jit: compiling the bf16 graph once is cheaper than op by op.
    want, got = np.asarray(ref(DARK).logits), nnx.jit(lambda m, x: m(x).logits)(half, DARK)
    assert got.dtype == jnp.float32  # returned in float32 for the losses
    np.testing.assert_allclose(np.asarray(got), want, atol=0.05 * np.abs(want).max() + 1e-3)


def encoder_count(d, tokens, mlp):
    attention = 4 * (d * d + d)
    ffn = d * mlp + mlp + mlp * d + d
    return attention + ffn + 2 * 2 * d + d + (tokens + 1) * d


def test_full_size_parameter_counts_and_feature_map():
    config = default_model_config()
    student = nnx.eval_shape(lambda: build_model(config, 11, kind="student", rngs=nnx.Rngs(0)))
    teacher = nnx.eval_shape(lambda: build_model(config, 11, kind="teacher", rngs=nnx.Rngs(0)))
    # The backbone's own count is checked against torchvision in test_r2plus1d.py.
    backbone = parameter_count(nnx.eval_shape(lambda: R2Plus1D(R2Plus1DSpec(34, "ig65m"), rngs=nnx.Rngs(0))))
    d = 512
    expected_student = backbone + encoder_count(d, 8, 2048) + d * 11 + 11
    assert inference_parameter_count(student) == expected_student
    assert round(expected_student / 1e6, 1) == 66.7  # paper: 67 M
    assert parameter_count(student) == expected_student + (d * d + d) + (d * 128 + 128)
    dff = 2 * d * 128 + 128 + 128 * 2 + 2
    assert inference_parameter_count(teacher) == expected_student + dff
    # 3 x 64 x 112 x 112 -> 512 x 8 x 7 x 7 backbone map, 11 logits.
    graphdef, state = nnx.split(teacher)
    x = jax.ShapeDtypeStruct((1, 64, 112, 112, 3), jnp.float32)
    feature_map = jax.eval_shape(lambda s, v: nnx.merge(graphdef, s).backbone.features(v), state, x)
    assert feature_map.shape == (1, 8, 7, 7, 512)
    teacher.eval()
    graphdef, state = nnx.split(teacher)
    out = jax.eval_shape(lambda s, a, b: nnx.merge(graphdef, s)(a, b), state, x, x)
    assert out.logits.shape == (1, 11)


def test_other_fusion_parameter_counts():
    d = DIM
    base = parameter_count(build(fusion="dark_only"))
    assert parameter_count(build(fusion="concat")) == base + 2 * d * d + d
    bottleneck = d * (d // 4) + 2 * (d // 4) + (d // 4) * d + 2 * d
    assert parameter_count(build(fusion="dff_spatiotemporal")) == base + 2 * bottleneck + 2 * d + 2


def test_default_config_and_errors():
    config = default_model_config()
    assert (config.backbone.depth, config.backbone.variant, config.fusion, config.num_frames) == (34, "ig65m", "dff_temporal", 64)
    assert set(FUSIONS) == {"dff_temporal", "dff_spatiotemporal", "concat", "dark_only", "retinex_only"}
    with pytest.raises(ValueError, match="dff_temporal.*retinex_only"):
        build(fusion="attention")
    with pytest.raises(ValueError, match="float32"):
        build(dtype="float16")
    with pytest.raises(ValueError, match="multiple of 8"):
        build(num_frames=12)
    with pytest.raises(ValueError, match="teacher"):
        build("ensemble")
    with pytest.raises(ValueError, match="stream_norm.*joint"):
        build(stream_norm="mixed")
    with pytest.raises(ValueError, match="num_classes=None"):
        Student(R2Plus1DSpec(10, width=0.125, num_classes=3), K, rngs=nnx.Rngs(0))
    assert isinstance(build("student"), Student) and isinstance(build(), Teacher)


def test_load_pretrained_backbone(tmp_path):
    from actlumos_jax.models.pretrained import CheckpointError, save_backbone

    spec = R2Plus1DSpec(10, "ig65m", width=0.125)
    source = materialize(nnx.eval_shape(lambda: R2Plus1D(spec, rngs=nnx.Rngs(0))), seed=11)
    save_backbone(source, tmp_path / "ckpt", metadata={"source": "test"})
    student = build("student")
    load_pretrained_backbone(student, tmp_path / "ckpt")
    want, got = nnx.state(source), nnx.state(student.backbone)
    for (path, w), (path2, g) in zip(jax.tree.leaves_with_path(want), jax.tree.leaves_with_path(got)):
        assert path == path2
        np.testing.assert_array_equal(w, g)
    # A per-stream teacher starts both streams' statistics from the checkpoint's.
    teacher = build(stream_norm="per_stream")
    load_pretrained_backbone(teacher, tmp_path / "ckpt")
    for backbone in (teacher.backbone, teacher.retinex_backbone):
        for w, g in zip(jax.tree.leaves(nnx.state(source, nnx.BatchStat)), jax.tree.leaves(nnx.state(backbone, nnx.BatchStat))):
            np.testing.assert_array_equal(w, g)
    wide = nnx.eval_shape(lambda: build("student", backbone=dict(depth=10, variant="ig65m", width=0.25)))
    with pytest.raises(CheckpointError, match="width"):
        load_pretrained_backbone(wide, tmp_path / "ckpt")
