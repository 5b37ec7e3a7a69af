"""Whether a stage's stored results belong to the config asked for now.

A finished stage is reused, and a checkpoint resumed, only when the resolved
config that produced it equals today's on every key that shapes the result.
Keys that only change how a run is carried out (logging, worker counts,
asynchronous saves, the devices) may differ.
"""

from __future__ import annotations

import json
from typing import Any

from actlumos_jax.checkpoint_compat import CheckpointError

# Keys whose values do not change what a stage computes.
_HOW_NOT_WHAT = ("log_every_steps", "data.num_workers", "eval.num_workers", "checkpoint", "mesh.num_devices",
                 "dataset.root", "ssl.other.root", "dataset.tfds_data_dir", "dataset.source", "prerequisites", "pipeline")


def resolved(config_json: dict) -> dict[str, Any]:
    """The config as flat ``a.b.c -> value``, without the keys that do not shape results."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = json.loads(json.dumps(node))  # tuples and lists compare alike

    walk("", config_json)
    return {k: v for k, v in flat.items() if not any(k == h or k.startswith(h + ".") for h in _HOW_NOT_WHAT)}


def differences(stored: dict, current: dict) -> list[str]:
    a, b = resolved(stored), resolved(current)
    return [f"{k}: stored {a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r}"
            for k in sorted(a.keys() | b.keys()) if a.get(k, "<absent>") != b.get(k, "<absent>")]


def check_same(where: str, stored: dict, current: dict, what: str) -> None:
    """Raises CheckpointError listing every difference; ``what`` says what would have been reused."""
    diffs = differences(stored, current)
    if diffs:
        shown = "\n  ".join(diffs[:20]) + (f"\n  ... and {len(diffs) - 20} more" if len(diffs) > 20 else "")
        raise CheckpointError(
            f"{where} holds {what} trained with another config ({len(diffs)} difference(s)):\n  {shown}\n"
            "Use a new --workdir for the new config, or delete that directory to retrain it.")
