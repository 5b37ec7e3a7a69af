"""On-disk format of a converted R(2+1)D backbone, and loading it into models.

A backbone checkpoint is a directory:

    OUT_DIR/
      backbone.json   spec (depth, variant, width, num_classes), format version and
                      whatever provenance the writer adds (source file, sha256, ...)
      state/          Orbax checkpoint of {"params": ..., "batch_stats": ...}, the
                      pure nested dicts of ``nnx.state`` (list indices as strings)

It is written atomically: everything goes to a hidden sibling directory that is
renamed into place only when complete. An existing OUT_DIR is refused unless
``overwrite=True``; then the old checkpoint is replaced only after the new one is
complete, so a failed write never leaves a half-written or missing checkpoint.

No torch here: reading the released .pth files is ``actlumos_jax.convert``'s job.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from actlumos_jax.checkpoint_compat import CheckpointError, format_problems, path_name, shape_problems
from actlumos_jax.models.r2plus1d import R2Plus1D, R2Plus1DSpec

FORMAT = "actlumos-r2plus1d-backbone"
FORMAT_VERSION = 1
METADATA_FILE = "backbone.json"
STATE_DIR = "state"
Path_ = tuple[Any, ...]


# ----------------------------------------------------------------- flat state


def flat_variables(model: nnx.Module) -> dict[Path_, nnx.Variable]:
    """Every variable of ``model`` keyed by its path, e.g. ('layers', 0, 1, 'bn1', 'scale')."""
    return {path: var for path, var in nnx.to_flat_state(nnx.state(model))}


def _collection(var: nnx.Variable) -> str:
    if isinstance(var, nnx.BatchStat):
        return "batch_stats"
    if isinstance(var, nnx.Param):
        return "params"
    raise TypeError(f"R2Plus1D holds an unexpected variable type {type(var).__name__}")


def fill_variables(model: nnx.Module, values: Mapping[Path_, Any], *, skip: Iterable[Path_] = ()) -> None:
    """Sets every variable of ``model`` (except ``skip``) from ``values`` (already shape-checked)."""
    skip = set(skip)
    for path, var in flat_variables(model).items():
        if path in skip:
            continue
        value = jnp.asarray(values[path], dtype=var.get_value().dtype)
        if value.shape != tuple(var.get_value().shape):
            raise AssertionError(f"unchecked shape for {path_name(path, '.')}")  # callers check first
        var.set_value(value)


def build_abstract(spec: R2Plus1DSpec, dtype: Any = jnp.float32) -> R2Plus1D:
    """The model's structure with shape-only variables: no random init (20 s at depth 34)."""
    return nnx.eval_shape(lambda: R2Plus1D(spec, dtype=dtype, rngs=nnx.Rngs(0)))


# ----------------------------------------------------------------- writing


def _spec_dict(spec: R2Plus1DSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def _nested_tree(model: nnx.Module) -> dict[str, dict]:
    tree: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for path, var in flat_variables(model).items():
        node = tree[_collection(var)]
        for key in path[:-1]:
            node = node.setdefault(str(key), {})
        node[str(path[-1])] = np.asarray(var.get_value())
    return tree


def save_backbone(
    backbone: R2Plus1D, out_dir: str | os.PathLike, *, metadata: Mapping[str, Any], overwrite: bool = False
) -> None:
    """Writes ``backbone`` (weights, BN statistics, head if any) to ``out_dir`` atomically.

    ``metadata`` (JSON-serialisable: source file, sha256, converter version, ...)
    is stored beside the spec. An existing ``out_dir`` raises unless ``overwrite``.
    """
    out_dir = Path(out_dir).absolute()
    abstract = [path_name(p, ".") for p, v in flat_variables(backbone).items()
                if isinstance(v.get_value(), jax.ShapeDtypeStruct)]
    if abstract:
        raise ValueError(f"cannot save {out_dir}: the backbone has unfilled (shape-only) variables, e.g. {abstract[0]}")
    if out_dir.exists() and not overwrite:
        raise CheckpointError(f"{out_dir}: already exists; pass overwrite=True to replace it")
    if "spec" in metadata or "format" in metadata:
        raise ValueError("metadata may not set 'spec' or 'format'; they come from the backbone")
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": _spec_dict(backbone.spec), **metadata}
    record_text = json.dumps(record, indent=2, sort_keys=True)  # fails before anything is written

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(tmp / STATE_DIR, _nested_tree(backbone))
        (tmp / METADATA_FILE).write_text(record_text + "\n")
        if out_dir.exists():
            os.rename(out_dir, old)
            try:
                os.rename(tmp, out_dir)
            except BaseException:
                os.rename(old, out_dir)
                raise
            shutil.rmtree(old)
        else:
            os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------- reading


def read_metadata(checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's JSON record (spec, format version, provenance)."""
    checkpoint_dir = Path(checkpoint_dir)
    meta_path = checkpoint_dir / METADATA_FILE
    if not (checkpoint_dir / STATE_DIR).is_dir() or not meta_path.is_file():
        raise CheckpointError(
            f"{checkpoint_dir}: not a backbone checkpoint (expected {METADATA_FILE} and {STATE_DIR}/ inside)"
        )
    try:
        record = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path}: unreadable metadata: {e}") from e
    if record.get("format") != FORMAT or record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: format {record.get('format')!r} v{record.get('format_version')!r}, "
            f"expected {FORMAT!r} v{FORMAT_VERSION}"
        )
    return record


def read_backbone_spec(checkpoint_dir: str | os.PathLike) -> R2Plus1DSpec:
    """The architecture stored with a checkpoint."""
    spec = read_metadata(checkpoint_dir).get("spec")
    try:
        return R2Plus1DSpec(**spec)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(checkpoint_dir) / METADATA_FILE}: bad spec {spec!r}: {e}") from e


def _stored_shapes(state_dir: Path) -> dict[Path_, tuple[int, ...]]:
    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.metadata(state_dir).item_metadata.tree
    out = {}
    for collection in ("params", "batch_stats"):
        leaves = jax.tree_util.tree_flatten_with_path(tree.get(collection, {}))[0]
        for key_path, meta in leaves:
            out[tuple(k.key for k in key_path)] = tuple(meta.shape)
    return out


def _path_key(path: Path_) -> Path_:
    return tuple(str(p) for p in path)


def load_backbone(backbone: R2Plus1D, checkpoint_dir: str | os.PathLike, *, load_head: bool = False) -> None:
    """Fills an already-built ``backbone`` in place from ``checkpoint_dir``.

    Depth, variant, width and every tensor shape are checked before anything is
    changed; all mismatches are listed in one error. With ``load_head=False`` the
    classifier (if either side has one) is left untouched: the dark-video recipes
    drop the IG-65M head.
    """
    checkpoint_dir = Path(checkpoint_dir).absolute()
    stored_spec = read_backbone_spec(checkpoint_dir)
    problems = []
    for field in ("depth", "variant", "width") + (("num_classes",) if load_head else ()):
        want, have = getattr(backbone.spec, field), getattr(stored_spec, field)
        if want != have:
            problems.append(f"spec {field}: model has {want!r}, checkpoint has {have!r}")

    variables = flat_variables(backbone)
    head = {p for p in variables if p[0] == "fc"}
    expected = {path_name(p, "."): tuple(v.get_value().shape) for p, v in variables.items() if load_head or p not in head}
    stored = _stored_shapes(checkpoint_dir / STATE_DIR)
    found = {path_name(p, "."): s for p, s in stored.items() if load_head or p[0] != "fc"}
    problems += shape_problems(expected, found)
    if problems:
        raise CheckpointError(format_problems(str(checkpoint_dir), problems))

    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.restore(checkpoint_dir / STATE_DIR)
    values = {}
    for collection in ("params", "batch_stats"):
        for key_path, value in jax.tree_util.tree_flatten_with_path(tree[collection])[0]:
            values[tuple(k.key for k in key_path)] = value
    fill_variables(
        backbone,
        {p: values[_path_key(p)] for p in variables if load_head or p not in head},
        skip=() if load_head else head,
    )


def load(checkpoint_dir: str | os.PathLike, *, dtype: Any = jnp.float32) -> R2Plus1D:
    """The stored backbone (with its head, if it has one), in eval mode."""
    spec = read_backbone_spec(checkpoint_dir)
    model = build_abstract(spec, dtype)
    load_backbone(model, checkpoint_dir, load_head=True)
    model.eval()
    return model
