"""Settings shared by every ActLumos stage.

``get_config(arg)`` takes a comma-separated ``key=value`` string, as in
``--config=configs/teacher.py:dataset=arid10,split=2,size=paper``:
  dataset  synthetic (default, the embedded dataset) | arid10 | arid15 | dark48
  split    the dataset's split number (default: its first split, written into the config)
  root     the dataset's root directory (required for the real datasets)
  size     tiny (default: CPU-sized) | paper (64x112x112, R(2+1)D-34, AdamW 1e-5, 50 epochs)
Any field can then be overridden with ``--config.a.b=value``; unknown keys and
wrongly typed values are rejected by ml_collections, bad choices by `validate`.
"""

import ml_collections

from actlumos_jax.models import FUSIONS, STREAM_NORMS, default_model_config
from actlumos_jax.train import stages
from data_pipelines.bad_input import InputError
from data_pipelines.datasets import DEFAULT_SPLIT

DATASETS = ("synthetic", "arid10", "arid15", "dark48")
SIZES = ("tiny", "paper")
SSL_POOLS = ("target", "other", "target+other")
ARG_DEFAULTS = dict(dataset="synthetic", split=-1, root="", size="tiny", preset="demo")


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """``"a=1,b=x"`` -> ConfigDict, typed after ``defaults``; unknown keys are errors."""
    parsed = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"config arg {item!r} is not key=value (in {arg!r})")
        if key not in defaults:
            raise InputError(f"unknown config arg {key!r}; known: {sorted(defaults)}")
        parsed[key] = _typed(key, value, defaults[key])
    return ml_collections.ConfigDict(parsed)


def _typed(key: str, value: str, default):
    if isinstance(default, bool):  # bool("False") would be True
        if value.lower() not in ("true", "false", "1", "0"):
            raise InputError(f"config arg {key}={value!r} is not a boolean (true/false)")
        return value.lower() in ("true", "1")
    try:
        return type(default)(value)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(type(default), type(default).__name__)
        raise InputError(f"config arg {key}={value!r} is not {kind}") from None


def size_of(arg: str | None) -> str:
    return parse_arg(arg, **ARG_DEFAULTS).size


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, **ARG_DEFAULTS)
    if a.dataset not in DATASETS:
        raise InputError(f"dataset must be one of {DATASETS}, got {a.dataset!r}")
    if a.size not in SIZES:
        raise InputError(f"size must be one of {SIZES}, got {a.size!r}")
    c = ml_collections.ConfigDict()
    c.size = a.size  # tiny | paper: names the default workdir, and paper without IG-65M weights is warned of
    c.stage = "teacher"
    c.seed = 0
    c.log_every_steps = 10

    # source: "files" reads the videos named by the split lists; "tfds" reads an array_record
    # copy (built from `root` on first use) from tfds_data_dir through tfds.data_source.
    # val_fraction: the share of the training actors held out as the validation split, which
    # chooses checkpoints and drives the plateau schedule (never the test split); val_seed draws them.
    # The split is always explicit, so two configs of one split are equal (for the fingerprint).
    split = a.split if a.split >= 0 else DEFAULT_SPLIT[a.dataset]
    c.dataset = dict(name=a.dataset, root=a.root, split=split, synthetic_preset=a.preset,
                     synthetic_seed=0, on_bad_input="fail", source="files", tfds_data_dir="",
                     val_fraction=0.2, val_seed=0)

    # interpolation: "bilinear" as the reference; "area" box-filters shrinks (see data_pipelines/transforms.py).
    c.data = dict(num_frames=64, frame_stride=1, resize=(128, 170), crop=112, interpolation="bilinear",
                  num_workers=2)
    # The SSL stage's unlabeled clips (labels never read): ``pool`` draws them from the target dataset
    # (its train split, or train and test: ``unlabeled_pool``), from ``other`` (every clip of its
    # train and test lists), or from both, as the paper pools ARID and Dark48. The embedded data's
    # ``other`` is a second generated set, another seed of the same generator.
    c.ssl = dict(strides=(1, 2), variant="spatiotemporal", unlabeled_pool="train", pool="target",
                 other=dict(name="synthetic", root="", split=-1, synthetic_preset=a.preset, synthetic_seed=1))
    c.enhance = dict(method="msr")

    c.model = default_model_config()
    c.model.num_frames = c.data.get_ref("num_frames")

    c.loss = dict(ce_weight=1.0, supcon_weight=0.1, supcon_temperature=0.1,
                  info_nce_temperature=0.1, info_nce_symmetric=False, kd_weight=1.0, kd_temperature=4.0)
    # The ancestors' recipe: AdamW 1e-5, wd 1e-3, batch 8 x 16 accumulation, plateau(5) on val loss.
    c.optim = dict(learning_rate=1e-5, weight_decay=1e-3, b1=0.9, b2=0.999, eps=1e-8,
                   schedule="plateau", warmup_updates=0, final_lr_fraction=0.0,
                   plateau_factor=0.1, plateau_patience=5, grad_accum_steps=16, clip_grad_norm=0.0)
    # class_balanced: batches of batch_size / clips_per_class classes x clips_per_class clips.
    c.train = dict(batch_size=8, epochs=50, num_steps=0, class_balanced=False, clips_per_class=2)
    # num_workers: -1 uses data.num_workers; 0 decodes in the training process.
    # select: the checkpoint scored on the test split, "best" on validation or the "last".
    c.eval = dict(batch_size=0, every_epochs=1, num_workers=-1, select="best")
    c.checkpoint = dict(every_steps=500, keep_best=2, async_save=True)
    c.mesh = dict(num_devices=-1, rules=[])
    # backbone_checkpoint: a converted IG-65M backbone; backbone_from_teacher: a teacher workdir.
    c.init = dict(backbone_checkpoint="", backbone_from_teacher="", student_workdir="")
    c.kd = dict(teacher_workdir="")

    if a.size == "tiny":
        _tiny(c)
    return c


def _tiny(c: ml_collections.ConfigDict) -> None:
    """Small enough to train all stages of the demo on a 2-core CPU in minutes.

    Small enough for a 2-core CPU: 8 x 32 x 32 clips and R(2+1)D-10 at 1/8 width
    (``python -m bench.model_forward --preset tiny --train_step`` times it). With
    the encoder seeing one temporal token, BERT's key masking would hide the
    only token from [CLS] for a fifth of the clips, so it is off here.
    """
    # 8 frames 4 apart span 29 of the demo's 32: the whole action, as a TSN-style sparse sample.
    c.data.num_frames = 8
    c.data.frame_stride = 4
    c.data.resize = (36, 48)
    c.data.crop = 32
    c.data.interpolation = "area"  # a ~4x shrink: box-filter the sensor noise instead of sampling it
    c.ssl.strides = (2, 4)
    c.model.backbone.depth = 10
    c.model.backbone.variant = "torchvision"
    c.model.backbone.width = 0.125
    c.model.encoder.num_heads = 2
    c.model.encoder.key_keep_prob = 1.0
    c.model.fusion_hidden = 16
    c.model.projection_dim = 32
    c.model.head_dropout = 0.1
    c.optim.learning_rate = 3e-3
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_updates = 10
    c.optim.grad_accum_steps = 1
    c.optim.clip_grad_norm = 1.0
    c.train.batch_size = 16
    c.train.epochs = 3
    # Starting grain's worker processes for each evaluation costs more than decoding the demo's
    # test clips in the training process.
    c.eval.num_workers = 0
    c.checkpoint.every_steps = 50
    c.log_every_steps = 5


def validate(c: ml_collections.ConfigDict) -> None:
    """Choices that ml_collections' type checks cannot catch."""
    checks = [
        ("dataset.name", c.dataset.name, DATASETS),
        ("dataset.on_bad_input", c.dataset.on_bad_input, ("fail", "skip")),
        ("dataset.source", c.dataset.source, ("files", "tfds")),
        ("data.interpolation", c.data.interpolation, ("bilinear", "area")),
        ("ssl.variant", c.ssl.variant, ("spatiotemporal", "spatial", "temporal")),
        ("ssl.unlabeled_pool", c.ssl.unlabeled_pool, ("train", "train_and_test")),
        ("ssl.pool", c.ssl.pool, SSL_POOLS),
        ("ssl.other.name", c.ssl.other.name, DATASETS),
        ("stage", c.stage, stages.NAMES),
        ("eval.select", c.eval.select, ("best", "last")),
        ("model.fusion", c.model.fusion, FUSIONS),
        ("model.stream_norm", c.model.stream_norm, STREAM_NORMS),
    ]
    for name, value, choices in checks:
        if value not in choices:
            raise InputError(f"config.{name} must be one of {choices}, got {value!r}")
    prebuilt = c.dataset.source == "tfds" and c.dataset.tfds_data_dir
    if c.dataset.name != "synthetic" and not c.dataset.root and not prebuilt:
        raise InputError(f"dataset {c.dataset.name!r} needs its root: add root=/path/to/it to the config arg "
                         "or set --config.dataset.root")
    if c.ssl.pool != "target":
        if c.ssl.other.name != "synthetic" and not c.ssl.other.root:
            raise InputError(f"config.ssl.pool={c.ssl.pool!r} reads config.ssl.other ({c.ssl.other.name!r}), "
                             "which needs its root: set --config.ssl.other.root=/path/to/it")
        if c.dataset.source != "files":
            raise InputError(f"config.ssl.pool={c.ssl.pool!r} pools clips of two datasets, which needs "
                             "config.dataset.source=files")
    if c.eval.num_workers < -1:
        raise InputError(f"config.eval.num_workers must be -1 (data.num_workers) or >= 0, got {c.eval.num_workers}")
    if c.train.batch_size < 1 or c.train.epochs < 0 or c.train.num_steps < 0:
        raise InputError("config.train: batch_size must be >= 1, epochs and num_steps >= 0")
    if c.train.clips_per_class < 1:
        raise InputError(f"config.train.clips_per_class must be >= 1 (the clips of each class in a class-balanced "
                         f"batch), got {c.train.clips_per_class}")
    # Frames are resized to data.resize = (height, width), then cropped to data.crop x data.crop.
    resize, crop = tuple(c.data.resize), c.data.crop
    if len(resize) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in resize):
        raise InputError(f"config.data.resize must be (height, width), two whole numbers >= 1, got {resize}")
    if crop < 1:
        raise InputError(f"config.data.crop must be >= 1, got {crop}")
    if min(resize) < crop:
        raise InputError(f"config.data.resize={resize} is smaller than config.data.crop={crop}: frames are resized "
                         f"to (height, width) and then cropped to {crop} x {crop}, so both sides of "
                         "config.data.resize must be at least config.data.crop; raise one or lower the other")
    if not 0 <= c.dataset.val_fraction < 1:
        raise InputError(f"config.dataset.val_fraction must be in [0, 1), got {c.dataset.val_fraction}")
    if c.dataset.val_fraction == 0 and (c.eval.select == "best" or c.optim.schedule == "plateau"):
        raise InputError("config.dataset.val_fraction=0 leaves no validation split, so nothing may select on it: "
                         "set config.eval.select=last and a schedule other than plateau, or keep a validation split")
    if c.train.class_balanced and c.train.batch_size % c.train.clips_per_class:
        raise InputError(f"config.train.batch_size={c.train.batch_size} is not a multiple of "
                         f"config.train.clips_per_class={c.train.clips_per_class}")


def validate_pipeline(c: ml_collections.ConfigDict) -> None:
    """Each prerequisite stage is validated (its errors name its own keys), and a top-level key of
    the KD pipeline that its stages would silently ignore is refused."""
    for name, stage in c.prerequisites.items():
        try:
            validate(stage)
        except InputError as e:
            raise InputError(str(e).replace("config.", f"config.prerequisites.{name}.")) from None
    if c.init.backbone_checkpoint and not c.pipeline.kd_only_baseline:
        raise InputError(
            "config.init.backbone_checkpoint would be overwritten by the SSL student's weights: set "
            "config.prerequisites.teacher.init.backbone_checkpoint and config.prerequisites.ssl.init.backbone_checkpoint "
            "(it is read at the top level only by the KD-only student, pipeline.kd_only_baseline=True)")
