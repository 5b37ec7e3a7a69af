"""Which checkpoints a stage keeps: the latest, and the best k by the validation metric."""

import jax.numpy as jnp
import pytest

from actlumos_jax.train.checkpointing import StageCheckpointer, chosen_step

# step -> validation metrics (None: a save between evaluations)
HISTORY = [(1, 50.0), (2, None), (3, 10.0), (4, 90.0), (5, 20.0), (6, None)]


def _save(checkpointer, history, metric):
    for step, value in history:
        metrics = None if value is None else {metric: value, "val_clips": 132}
        checkpointer.save(step, {"w": jnp.full((2,), step, jnp.float32)}, None, {}, metrics, force=True)
    checkpointer.wait()


def _expected(history, mode, keep_best, more=()):
    """Latest step plus the keep_best best-ranked steps, worked out by hand."""
    everything = list(history) + list(more)
    ranked = sorted((s for s in everything if s[1] is not None), key=lambda s: s[1], reverse=(mode == "max"))
    return sorted({everything[-1][0]} | {step for step, _ in ranked[:keep_best]})


@pytest.mark.parametrize("mode, metric", [("max", "val_top1"), ("min", "val_loss")])
def test_keeps_the_latest_and_the_best_k(tmp_path, mode, metric):
    checkpointer = StageCheckpointer(tmp_path, best_metric=metric, best_mode=mode, keep_best=2, async_save=False)
    _save(checkpointer, HISTORY, metric)
    kept = checkpointer.manager.all_steps()
    checkpointer.close()
    # max keeps 4 (90) and 1 (50); min keeps 3 (10) and 5 (20); 6 is the latest.
    assert sorted(kept) == _expected(HISTORY, mode, 2) == ([1, 4, 6] if mode == "max" else [3, 5, 6])
    assert chosen_step(tmp_path, metric, mode) == (4 if mode == "max" else 3)


def test_a_restarted_run_ranks_checkpoints_saved_between_evaluations_last(tmp_path):
    first = StageCheckpointer(tmp_path, best_metric="val_top1", best_mode="max", keep_best=2, async_save=False)
    _save(first, HISTORY, "val_top1")
    first.close()
    # A resumed run reads step 6's empty metrics item back from disk.
    resumed = StageCheckpointer(tmp_path, best_metric="val_top1", best_mode="max", keep_best=2, async_save=False)
    more = [(7, None), (8, 70.0)]
    _save(resumed, more, "val_top1")
    kept = resumed.manager.all_steps()
    resumed.close()
    assert sorted(kept) == _expected(HISTORY, "max", 2, more) == [4, 8]


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="best_mode"):
        StageCheckpointer(tmp_path, best_metric="val_top1", best_mode="highest")
