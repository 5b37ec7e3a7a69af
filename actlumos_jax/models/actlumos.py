"""ActLumos teacher (dark + retinex, one shared backbone, fusion) and student (dark only).

Both: R(2+1)D backbone map (N, T', H', W', C) -> mean over H', W' -> T' tokens
-> TemporalEncoder -> [CLS] -> dropout -> linear head. The teacher fuses its
two streams before the encoder; the student adds an SSL projection head on
[CLS] used only in its self-supervised stage.

Logits, embeddings and projections are returned in float32 whatever the
compute dtype, so losses never run in bfloat16.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import einops
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from actlumos_jax.models.encoder import TemporalEncoder, torch_linear_init
from actlumos_jax.models.fusion import ConcatFusion, SingleStream, SpatiotemporalDFF, TemporalDFF
from actlumos_jax.models.initialize import construct
from actlumos_jax.models.r2plus1d import R2Plus1D, R2Plus1DSpec, parameter_count

FUSIONS = ("dff_temporal", "dff_spatiotemporal", "concat", "dark_only", "retinex_only")
# How the teacher's two streams meet the shared backbone's BatchNorm (see `Teacher`).
STREAM_NORMS = ("joint", "per_stream", "separate")
KINDS = ("teacher", "student")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# The backbone halves time three times (layers 2-4), so T' = num_frames / 8.
TEMPORAL_STRIDE = 8


class TeacherOutput(NamedTuple):
    logits: jax.Array                  # (N, K)
    embed_dark: jax.Array | None       # (N, C): backbone map averaged over T, H, W; not normalised
    embed_retinex: jax.Array | None    # (N, C); None for the single-stream ablations
    gate_weights: jax.Array | None     # fusion weights, [..., 2] = (dark, retinex); None if static


class StudentOutput(NamedTuple):
    logits: jax.Array      # (N, K)
    cls: jax.Array         # (N, C): encoder [CLS] output
    projection: jax.Array  # (N, projection_dim): SSL projection of [CLS]


def _head(dim: int, num_classes: int, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(dim, num_classes, dtype=dtype, param_dtype=jnp.float32,
                      kernel_init=nnx.initializers.xavier_uniform(),
                      bias_init=nnx.initializers.zeros_init(), rngs=rngs)


def _backbone(spec: R2Plus1DSpec, dtype: Any, rngs: nnx.Rngs) -> R2Plus1D:
    if spec.num_classes is not None:
        raise ValueError(f"the ActLumos backbone takes no classifier head: use num_classes=None, got {spec.num_classes}")
    return R2Plus1D(spec, dtype=dtype, rngs=rngs)


def _encoder(dim: int, encoder_kwargs: dict | None, dtype: Any, rngs: nnx.Rngs) -> TemporalEncoder:
    kwargs = dict(encoder_kwargs or {})
    if kwargs.setdefault("dim", dim) != dim:
        raise ValueError(f"encoder dim {kwargs['dim']} must equal the backbone feature dim {dim}")
    return TemporalEncoder(**kwargs, dtype=dtype, rngs=rngs)


def tokens_from_map(feature_map: jax.Array) -> jax.Array:
    """(N, T, H, W, C) -> (N, T, C): spatial average pool, one token per time step."""
    return einops.reduce(feature_map, "n t h w c -> n t c", "mean")


def _make_fusion(fusion: str, dim: int, hidden: int | None, dtype: Any, rngs: nnx.Rngs) -> nnx.Module:
    if fusion == "dff_temporal":
        return TemporalDFF(dim, hidden, dtype=dtype, rngs=rngs)
    if fusion == "dff_spatiotemporal":
        return SpatiotemporalDFF(dim, dtype=dtype, rngs=rngs)
    if fusion == "concat":
        return ConcatFusion(dim, dtype=dtype, rngs=rngs)
    if fusion == "dark_only":
        return SingleStream("dark")
    if fusion == "retinex_only":
        return SingleStream("retinex")
    raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")


def _share_params(source: nnx.Module, target: nnx.Module) -> None:
    """Makes each ``nnx.Param`` of ``target`` the very Variable of ``source`` at the same path.

    The two modules then hold one set of weights (split, merge, optimisers and
    parameter counts see it once) and keep their other state, here BatchNorm's
    running statistics, apart.
    """
    shared = {path: value for path, value in nnx.iter_graph(source) if isinstance(value, nnx.Param)}
    for path, node in list(nnx.iter_graph(target)):
        if isinstance(node, nnx.Module):
            for name, value in list(vars(node).items()):
                if isinstance(value, nnx.Param):
                    setattr(node, name, shared[(*path, name)])


def copy_batch_stats(source: nnx.Module, target: nnx.Module) -> None:
    """Overwrites ``target``'s BatchNorm statistics with ``source``'s (same architecture)."""
    nnx.update(target, nnx.state(source, nnx.BatchStat))


class Teacher(nnx.Module):
    """Dual-stream teacher: dark and retinex clips through ONE shared backbone, fused, encoded.

    ``stream_norm`` says how the streams meet the backbone's BatchNorm:
      joint       one backbone call on the 2N clips [dark; retinex]: training
                  normalises both streams with the statistics of the pair, and
                  the running averages estimate exactly those, so evaluation
                  computes what training did.
      per_stream  shared weights, but each stream keeps its own running
                  statistics (``retinex_backbone`` holds the retinex ones; its
                  Params are ``backbone``'s): each stream is normalised with its
                  own statistics in training and in evaluation.
      separate    two calls through one backbone with one set of running
                  statistics. Training normalises each stream with its own batch
                  statistics, but both calls update the same averages, so
                  evaluation normalises both streams with a blend of the two
                  (about half and half at torch momentum 0.1, about 90 %
                  retinex at IG-65M's 0.9). Kept as the control that shows it.
    The single-stream ablations run only their stream; the other input may be
    None and its embedding is None.
    """

    def __init__(
        self,
        backbone: R2Plus1DSpec,
        fusion: str,
        num_classes: int,
        encoder_kwargs: dict | None = None,
        *,
        fusion_hidden: int | None = None,
        head_dropout: float = 0.8,
        stream_norm: str = "joint",
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if stream_norm not in STREAM_NORMS:
            raise ValueError(f"stream_norm must be one of {STREAM_NORMS}, got {stream_norm!r}")
        dim = backbone.feature_dim
        self.fusion_name = fusion
        self.stream_norm = stream_norm
        self.backbone = _backbone(backbone, dtype, rngs)
        two_streams = fusion not in ("dark_only", "retinex_only")
        if stream_norm == "per_stream" and two_streams:
            self.retinex_backbone = _backbone(backbone, dtype, rngs)
            _share_params(self.backbone, self.retinex_backbone)
        else:
            self.retinex_backbone = None
        self.fusion = _make_fusion(fusion, dim, fusion_hidden, dtype, rngs)
        self.encoder = _encoder(dim, encoder_kwargs, dtype, rngs)
        self.head_dropout = nnx.Dropout(head_dropout, rngs=rngs)
        self.head = _head(dim, num_classes, dtype, rngs)

    def stream_maps(self, dark: jax.Array | None, retinex: jax.Array | None):
        """The backbone maps (N, T', H', W', C) of the streams this teacher uses (None for the other)."""
        use_dark = self.fusion_name != "retinex_only"
        use_retinex = self.fusion_name != "dark_only"
        for name, clip, used in (("dark", dark, use_dark), ("retinex", retinex, use_retinex)):
            if used and clip is None:
                raise ValueError(f"Teacher(fusion={self.fusion_name!r}) needs the {name} clip, got None")
        if not (use_dark and use_retinex):
            return (self.backbone.features(dark), None) if use_dark else (None, self.backbone.features(retinex))
        if dark.shape != retinex.shape:
            raise ValueError(f"the dark and retinex clips differ in shape: {dark.shape} vs {retinex.shape}")
        if self.stream_norm == "joint":
            both = self.backbone.features(jnp.concatenate([dark, retinex]))
            return both[: dark.shape[0]], both[dark.shape[0]:]
        retinex_backbone = self.retinex_backbone if self.stream_norm == "per_stream" else self.backbone
        return self.backbone.features(dark), retinex_backbone.features(retinex)

    def __call__(self, dark: jax.Array | None, retinex: jax.Array | None) -> TeacherOutput:
        map_dark, map_ret = self.stream_maps(dark, retinex)
        if self.fusion_name == "dff_spatiotemporal":
            fused_map, weights = self.fusion(map_dark, map_ret)
            tokens = tokens_from_map(fused_map)
        else:
            tokens, weights = self.fusion(
                None if map_dark is None else tokens_from_map(map_dark),
                None if map_ret is None else tokens_from_map(map_ret),
            )
        cls = self.encoder(tokens)[:, 0]
        logits = self.head(self.head_dropout(cls))

        def embed(feature_map):
            if feature_map is None:
                return None
            return einops.reduce(feature_map.astype(jnp.float32), "n t h w c -> n c", "mean")

        return TeacherOutput(logits.astype(jnp.float32), embed(map_dark), embed(map_ret), weights)


class Student(nnx.Module):
    """Single-stream student: dark clip -> backbone -> tokens -> encoder -> head.

    ``projection`` (C -> C -> projection_dim MLP on [CLS]) serves only the SSL
    stage and is not part of the inference model.
    """

    def __init__(
        self,
        backbone: R2Plus1DSpec,
        num_classes: int,
        encoder_kwargs: dict | None = None,
        *,
        head_dropout: float = 0.8,
        projection_dim: int = 128,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        dim = backbone.feature_dim
        self.backbone = _backbone(backbone, dtype, rngs)
        self.encoder = _encoder(dim, encoder_kwargs, dtype, rngs)
        self.head_dropout = nnx.Dropout(head_dropout, rngs=rngs)
        self.head = _head(dim, num_classes, dtype, rngs)
        k1, b1 = torch_linear_init(dim)
        self.projection = nnx.Sequential(
            nnx.Linear(dim, dim, dtype=dtype, param_dtype=jnp.float32, kernel_init=k1, bias_init=b1, rngs=rngs),
            jax.nn.relu,
            nnx.Linear(dim, projection_dim, dtype=dtype, param_dtype=jnp.float32,
                       kernel_init=k1, bias_init=b1, rngs=rngs),
        )

    def __call__(self, dark: jax.Array) -> StudentOutput:
        cls = self.encoder(tokens_from_map(self.backbone.features(dark)))[:, 0]
        logits = self.head(self.head_dropout(cls))
        return StudentOutput(logits.astype(jnp.float32), cls.astype(jnp.float32),
                             self.projection(cls).astype(jnp.float32))


def inference_parameter_count(model: nnx.Module) -> int:
    """Trainable scalars used at test time (the Student's SSL projection excluded).

    Works on abstract models from ``nnx.eval_shape`` too.
    """
    count = parameter_count(model)
    if isinstance(model, Student):
        count -= parameter_count(model.projection)
    return count


def default_model_config() -> ml_collections.ConfigDict:
    """The full-size ActLumos model: R(2+1)D-34 IG-65M, 1-layer 8-head encoder, temporal DFF."""
    config = ml_collections.ConfigDict()
    config.backbone = ml_collections.ConfigDict(dict(depth=34, variant="ig65m", width=1.0))
    config.encoder = ml_collections.ConfigDict(dict(
        num_layers=1, num_heads=8, mlp_ratio=4, dropout=0.1, attention_dropout=0.1,
        key_keep_prob=0.8, layernorm="standard",
    ))
    config.fusion = "dff_temporal"
    config.fusion_hidden = 128
    config.stream_norm = "joint"
    config.head_dropout = 0.8
    config.projection_dim = 128
    config.dtype = "float32"
    config.num_frames = 64
    return config


def build_model(model_config: ml_collections.ConfigDict, num_classes: int, *, kind: str,
                rngs: nnx.Rngs) -> nnx.Module:
    """Teacher or Student from a ``default_model_config()``-shaped config."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if model_config.dtype not in DTYPES:
        raise ValueError(f"config.dtype must be one of {tuple(DTYPES)}, got {model_config.dtype!r}")
    if model_config.num_frames <= 0 or model_config.num_frames % TEMPORAL_STRIDE:
        raise ValueError(
            f"config.num_frames must be a positive multiple of {TEMPORAL_STRIDE} "
            f"(the backbone's temporal stride), got {model_config.num_frames}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    dtype = DTYPES[model_config.dtype]
    b = model_config.backbone
    spec = R2Plus1DSpec(depth=b.depth, variant=b.variant, width=b.width, num_classes=None)
    e = model_config.encoder
    dim = spec.feature_dim
    encoder_kwargs = dict(
        dim=dim, num_tokens=model_config.num_frames // TEMPORAL_STRIDE, num_layers=e.num_layers,
        num_heads=e.num_heads, mlp_dim=e.mlp_ratio * dim, dropout=e.dropout,
        attention_dropout=e.attention_dropout, key_keep_prob=e.key_keep_prob, layernorm=e.layernorm,
    )
    if kind == "teacher":
        fusion = model_config.fusion
        fusion_hidden, head_dropout = model_config.fusion_hidden, model_config.head_dropout
        # A saved teacher config without the key was trained with two calls: "separate".
        stream_norm = model_config.get("stream_norm", "separate")
        return construct(lambda r: Teacher(spec, fusion, num_classes, encoder_kwargs, fusion_hidden=fusion_hidden,
                                           head_dropout=head_dropout, stream_norm=stream_norm, dtype=dtype, rngs=r),
                         rngs)
    head_dropout, projection_dim = model_config.head_dropout, model_config.projection_dim
    return construct(lambda r: Student(spec, num_classes, encoder_kwargs, head_dropout=head_dropout,
                                       projection_dim=projection_dim, dtype=dtype, rngs=r), rngs)


def load_pretrained_backbone(model: Teacher | Student, checkpoint_dir: str) -> None:
    """Fills ``model.backbone`` from a converted IG-65M Orbax checkpoint (head not loaded)."""
    # Imported here so this module does not depend on the converter at import time.
    from actlumos_jax.models.pretrained import load_backbone

    if not isinstance(getattr(model, "backbone", None), R2Plus1D):
        raise ValueError(f"{type(model).__name__} has no R2Plus1D .backbone to load into")
    load_backbone(model.backbone, checkpoint_dir, load_head=False)
    if getattr(model, "retinex_backbone", None) is not None:  # per-stream statistics start from the same ones
        copy_batch_stats(model.backbone, model.retinex_backbone)
