"""A trained student, ready to classify uint8 clips: from its stage directory or from an exported artifact.

A stage directory is what ``actlumos_jax.train.loop`` writes (``final_metrics.json``
and ``checkpoints/``); the checkpoint read is the one the stage chose
(``warm_start.selected_step``), and the preprocessing settings come from that
checkpoint's saved config, so inference sees clips exactly as evaluation did.
An exported artifact (``actlumos_jax.inference.export``) is a directory holding
``model.stablehlo`` and ``meta.json``; it runs with jax alone.

Both load into a ``Predictor``: the class names, the ``Preprocessing`` of the
clips, and ``logits(uint8 (N, T, crop_h, crop_w, 3)) -> float32 (N, K)``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from actlumos_jax.checkpoint_compat import CheckpointError
from actlumos_jax.models.actlumos import tokens_from_map
from actlumos_jax.train import checkpointing, warm_start
from actlumos_jax.train.state import split_model
from actlumos_jax.train.pipeline import STAGE_DIRS
from data_pipelines import sampling, transforms
from data_pipelines.bad_input import InputError

ARTIFACT_FILE = "model.stablehlo"
META_FILE = "meta.json"
# Pipeline sub-directories holding a student that classifies, best first (the recipe's final model first).
STUDENT_DIRS = ("kd", "ssl_only", "kd_only")
CLASSIFYING_STAGES = ("kd",)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a clip is sampled and cropped: the stage's ``config.data`` at evaluation."""

    num_frames: int
    frame_stride: int
    resize: tuple[int, int]
    crop: tuple[int, int]
    interpolation: str

    @property
    def span(self) -> int:
        """Frames one clip covers (``num_frames`` samples ``frame_stride`` apart)."""
        return sampling.clip_span(self.num_frames, self.frame_stride)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "Preprocessing":
        d = config.data
        crop = (d.crop, d.crop) if isinstance(d.crop, int) else tuple(int(c) for c in d.crop)
        return cls(int(d.num_frames), int(d.frame_stride), tuple(int(r) for r in d.resize), crop,
                   str(d.get("interpolation", "bilinear")))

    @classmethod
    def from_json(cls, data: dict) -> "Preprocessing":
        return cls(int(data["num_frames"]), int(data["frame_stride"]), tuple(data["resize"]), tuple(data["crop"]),
                   str(data["interpolation"]))

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"resize": list(self.resize), "crop": list(self.crop)}


@dataclasses.dataclass
class Predictor:
    """A classifier of uint8 clips (N, num_frames, crop_h, crop_w, 3), whatever it was loaded from."""

    source: Path
    kind: str  # "workdir" or "artifact"
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    logits_fn: Callable[[np.ndarray], Any]
    info: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 8

    def logits(self, clips: np.ndarray) -> np.ndarray:
        """float32 (N, K) for any N: run in batches of ``batch_size``, the last one padded, so only one
        program shape is ever compiled."""
        clips = np.asarray(clips, np.uint8)
        out = []
        for start in range(0, len(clips), self.batch_size):
            chunk = clips[start:start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), np.uint8)])
            out.append(np.asarray(self.logits_fn(chunk), np.float32)[:n])
        k = len(self.class_names)
        return np.concatenate(out) if out else np.zeros((0, k), np.float32)


# ----------------------------------------------------------------- workdirs


def resolve_student_workdir(path: str | Path) -> tuple[Path, str | None]:
    """The student stage directory ``path`` names, and a note when it was found inside a pipeline workdir.

    A stage directory (it has ``checkpoints/``) is returned as is; a pipeline workdir
    (``main.py --config=configs/kd_student.py``) resolves to its KD student.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such directory")
    if not path.is_dir():
        raise InputError(f"{path}: not a directory (expected a trained student's stage directory "
                         f"or an exported artifact)")
    if (path / "checkpoints").is_dir() or (path / warm_start.DONE_FILE).is_file():
        return path, None
    for key in STUDENT_DIRS:
        candidate = path / STAGE_DIRS[key]
        if warm_start.stage_finished(candidate) is not None:
            return candidate, f"{path} is a pipeline workdir: using its {STAGE_DIRS[key]} stage ({candidate})"
    present = [name for name in STAGE_DIRS.values() if (path / name).is_dir()]
    hint = (f" (it holds {', '.join(present)}, but no finished student among "
            f"{', '.join(STAGE_DIRS[k] for k in STUDENT_DIRS)})") if present else ""
    raise InputError(f"{path}: holds no trained student: no checkpoints/ and no {warm_start.DONE_FILE}{hint}. "
                     "Pass a student's stage directory (e.g. WORKDIR/kd_student) or an exported artifact")


def student_step_and_config(workdir: Path) -> tuple[int, ml_collections.ConfigDict]:
    """The checkpoint the stage chose and its saved config; refuses a teacher or an SSL-pretraining stage."""
    step = warm_start.selected_step(workdir)
    if step is None:
        raise InputError(f"{workdir}: holds no trained student: no checkpoint under {workdir / 'checkpoints'}")
    config = warm_start.saved_config(workdir, step)
    if config.stage == "teacher":
        raise InputError(f"{workdir}: is a teacher stage (two streams, dark + enhanced); a student is expected "
                         "here. Pass the KD student's directory (e.g. the pipeline's kd_student)")
    if config.stage not in CLASSIFYING_STAGES:
        raise InputError(f"{workdir}: is a {config.stage!r} stage, whose classification head was never trained "
                         "(self-supervised pretraining). Pass a student fine-tuned on labels (a kd stage)")
    return step, config


def class_names_for(config: ml_collections.ConfigDict, num_classes: int) -> tuple[str, ...]:
    """The class names of the stage's dataset (in label order); ``class_<i>`` where they cannot be known."""
    ds = config.get("dataset") or {}
    name = ds.get("name", "")
    names: tuple[str, ...] = ()
    if name == "synthetic":
        from data_pipelines.synthetic_scene import CLASS_NAMES  # pylint: disable=g-import-not-at-top
        names = tuple(CLASS_NAMES)
    elif name in ("arid10", "arid15"):
        from data_pipelines.datasets import ARID_CLASSES  # pylint: disable=g-import-not-at-top
        names = tuple(ARID_CLASSES)
    elif name == "dark48" and ds.get("root"):
        from data_pipelines import datasets  # pylint: disable=g-import-not-at-top
        split = ds.get("split", -1)
        try:
            info, _ = datasets.read_split("dark48", root=ds.root, split=split if split >= 0 else None, subset="test",
                                          on_bad_input="skip")
            names = tuple(info.class_names)
        except Exception:  # pylint: disable=broad-except  # the root moved: numbered names below
            names = ()
    if len(names) != num_classes:
        names = tuple(f"class_{i}" for i in range(num_classes))
    return names


def _placeholder(leaf: jax.ShapeDtypeStruct) -> jax.Array:
    """A concrete value for an RNG-stream variable; evaluation mode draws no random numbers."""
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.key(0)
    return jnp.zeros(leaf.shape, leaf.dtype)


def load_student_model(workdir: str | Path) -> tuple[nnx.Module, ml_collections.ConfigDict, int, tuple[str, ...]]:
    """The trained student of a stage directory in evaluation mode, its saved config, checkpoint step
    and class names."""
    workdir = Path(workdir)
    step, config = student_step_and_config(workdir)
    directory = workdir / "checkpoints"
    num_classes = warm_start._stored_head_classes(directory, step)  # pylint: disable=protected-access
    if not num_classes:
        raise CheckpointError(f"{directory / str(step)}: holds no classification head")
    # Built abstractly and filled from the checkpoint: initialising the weights eagerly first would
    # compile one small XLA program per initialiser (most of a minute on a 2-core CPU) for values
    # that the checkpoint replaces anyway.
    abstract = nnx.eval_shape(lambda: warm_start.model_for_config(config.model, num_classes, "student", 0))
    frozen = checkpointing.load_model_variables(directory, step, abstract)
    graphdef, _, _, rngs = split_model(abstract)
    model = nnx.merge(graphdef, jax.tree.map(jnp.asarray, frozen.params),
                      jax.tree.map(jnp.asarray, frozen.batch_stats), jax.tree.map(_placeholder, rngs))
    model.eval()
    return model, config, step, class_names_for(config, num_classes)


def student_logits(model: nnx.Module, video_uint8: jax.Array, dtype: Any = None) -> jax.Array:
    """float32 logits of raw uint8 clips (N, T, H, W, 3): the training's on-device input
    normalisation, then the student (in evaluation mode: no dropout, running BatchNorm statistics).

    ``Student.__call__`` without its SSL projection, which is not part of the inference model: the
    [CLS] output of the encoder goes to the head alone (tests check the logits equal the model's)."""
    dtype = jnp.dtype(dtype or jnp.float32)
    x = transforms.normalize(video_uint8, dtype)
    cls = model.encoder(tokens_from_map(model.backbone.features(x)))[:, 0]
    return model.head(model.head_dropout(cls)).astype(jnp.float32)


def jitted_logits(model: nnx.Module, dtype: Any) -> Callable[[np.ndarray], jax.Array]:
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, video):
        m = nnx.merge(graphdef, state)
        m.eval()
        return student_logits(m, video, dtype)

    return lambda video: forward(state, video)


def load_workdir(path: str | Path, batch_size: int = 8) -> Predictor:
    workdir, note = resolve_student_workdir(path)
    model, config, step, class_names = load_student_model(workdir)
    done = warm_start.stage_finished(workdir) or {}
    info = {"stage": config.stage, "step": step, "title": done.get("title", ""),
            "finished": bool(done), "test_metrics": done.get("metrics", {}),
            "dataset": (config.get("dataset") or ml_collections.ConfigDict()).to_dict()}
    if note:
        info["note"] = note
    return Predictor(workdir, "workdir", class_names, Preprocessing.from_config(config),
                     jitted_logits(model, config.model.dtype), info, batch_size)


# ---------------------------------------------------------------- artifacts


def is_artifact(path: str | Path) -> bool:
    path = Path(path)
    return (path / ARTIFACT_FILE).is_file() and (path / META_FILE).is_file()


def load_artifact(path: str | Path, batch_size: int = 8) -> Predictor:
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
        exported = jax.export.deserialize(bytearray((path / ARTIFACT_FILE).read_bytes()))
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a readable exported model ({type(e).__name__}: {e})") from None
    platform = jax.default_backend()
    if platform not in exported.platforms:
        raise InputError(f"{path}: exported for {', '.join(exported.platforms)}, and this machine runs {platform}; "
                         "export it again for this platform")
    call = jax.jit(exported.call)
    info = {k: meta[k] for k in ("stage", "step", "source_workdir", "dataset") if k in meta}
    return Predictor(path, "artifact", tuple(meta["class_names"]), Preprocessing.from_json(meta["preprocessing"]),
                     call, info, batch_size)


def load_predictor(path: str | Path, batch_size: int = 8) -> Predictor:
    """A ``Predictor`` from a student's stage directory, a pipeline workdir, or an exported artifact directory."""
    if is_artifact(path):
        return load_artifact(path, batch_size)
    return load_workdir(path, batch_size)
