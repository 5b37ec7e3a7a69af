"""Whether a checkpoint fits a model: one error, one way to name a tensor, one mismatch report.

Used by every loader of stored weights: the converted IG-65M backbone
(``models/pretrained.py``, ``convert.py``), the stage checkpoints
(``train/checkpointing.py``) and the sharding rules (``train/parallel.py``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import jax
import numpy as np

from data_pipelines.bad_input import InputError

_MAX_LISTED = 25  # a wrong-depth checkpoint mismatches hundreds of tensors


class CheckpointError(InputError):
    """A checkpoint (a stage's, a converted backbone, a .pth) that cannot be used as given; names the file."""


def key_name(key: Any) -> str:
    """One pytree path entry as text: a dict key, a list index or an attribute name."""
    for attribute in ("key", "idx", "name"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def path_name(path: Iterable[Any], sep: str = "/") -> str:
    return sep.join(key_name(k) for k in path)


def flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """Every leaf's shape keyed by its "/"-joined path; NNX's trailing ``value`` key is dropped,
    so a model's ``nnx.State`` and the checkpoint metadata of the same state name tensors alike."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        keys = [key_name(k) for k in path]
        if keys and keys[-1] == "value":
            keys = keys[:-1]
        out["/".join(keys)] = tuple(getattr(leaf, "shape", np.shape(leaf)))
    return out


def shape_problems(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Missing, unexpected and wrongly shaped entries, all of them, sorted by name."""
    problems = []
    for name in sorted(expected.keys() - found.keys()):
        problems.append(f"missing {name} (expected shape {tuple(expected[name])})")
    for name in sorted(found.keys() - expected.keys()):
        problems.append(f"unexpected {name} (shape {tuple(found[name])})")
    for name in sorted(expected.keys() & found.keys()):
        if tuple(expected[name]) != tuple(found[name]):
            problems.append(f"wrong shape for {name}: expected {tuple(expected[name])}, found {tuple(found[name])}")
    return problems


def format_problems(where: str, problems: list[str]) -> str:
    shown = problems[:_MAX_LISTED]
    more = len(problems) - len(shown)
    lines = [f"{where}: {len(problems)} mismatch(es) with the model:"] + [f"  - {p}" for p in shown]
    if more:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)
