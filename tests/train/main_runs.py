"""Running main.py as a subprocess in the tests, and reading back what it saved."""

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "--config.data.num_frames=8", "--config.data.resize=(36, 48)", "--config.data.crop=32",
    "--config.data.num_workers=0", "--config.model.backbone.width=0.125", "--config.model.encoder.num_heads=2",
    "--config.model.projection_dim=8", "--config.model.fusion_hidden=8", "--config.train.batch_size=8",
    "--config.enhance.method=gamma", "--config.log_every_steps=1",
]


def main_cmd(config: str, workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), f"--config={ROOT / 'configs' / config}:preset=tiny",
            f"--workdir={workdir}", *SMALL, *extra]


def run(cmd, env, timeout=600, check=True):
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def saved_steps(workdir: Path) -> list[int]:
    directory = workdir / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def restored_state(workdir: Path, step: int) -> dict:
    """The train state saved at ``step``, as NumPy arrays."""
    with ocp.CheckpointManager(workdir / "checkpoints", item_handlers={"state": ocp.PyTreeCheckpointHandler()},
                               options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
        meta = manager.item_metadata(step)["state"]
        args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), meta)
        state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(restore_args=args)))["state"]
    return state


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) and leaves_a
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
