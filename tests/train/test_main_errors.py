"""main.py stopped by bad input while grain's worker processes run: the message, and nothing after it."""

import multiprocessing

import pytest

from actlumos_jax.train import checkpointing, input_pipeline, loop, parallel
from actlumos_jax.train.stages import make_stage
from data_pipelines.bad_input import InputError
from data_pipelines.records import ClipRecord, SplitInfo
from tests.data import fixtures
from tests.train.helpers import tiny_config
from tests.train.main_runs import main_cmd, run


def test_an_undecodable_video_in_a_worker_stops_the_run_with_one_message(env, tmp_path):
    root = tmp_path / "arid10"
    fake = fixtures.write_arid10(root, clips_per_class={"train": 2, "test": 1})
    for clip, _ in fake.subsets["train"][:3]:
        fixtures.write_corrupt_video(fake.video_path(clip))
    cmd = main_cmd("ssl_student.py", tmp_path / "run", "--config.train.num_steps=2", "--config.data.num_workers=2",
                   "--config.eval.num_workers=0")
    cmd[2] = f"--config={cmd[2].split('=', 1)[1].split(':')[0]}:dataset=arid10,root={root}"
    proc = run(cmd, env, check=False, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "not a readable video" in errors[0], proc.stderr[-3000:]
    # grain's workers are stopped before the interpreter exits: no exit-time finalizer traceback follows.
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


class _Recorded:
    """A data iterator that remembers whether it was closed."""

    def __init__(self, iterator):
        self.iterator, self.closed = iterator, False

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.iterator)

    def get_state(self):
        return self.iterator.get_state()

    def close(self):
        self.closed = True
        self.iterator.close()


class _RecordingLoader:
    def __init__(self, loader):
        self.loader, self.iterators = loader, []
        self.steps_per_epoch = loader.steps_per_epoch

    def __iter__(self):
        self.iterators.append(_Recorded(iter(self.loader)))
        return self.iterators[-1]


def test_a_run_stopped_by_bad_input_closes_its_data_iterators(tmp_path, monkeypatch):
    """loop.train and loop.evaluate close their grain iterators on the way out, so the worker processes
    stop before the error reaches the caller, not in an exit-time finalizer that races their shutdown."""
    config = tiny_config("ssl", **{"data.num_workers": 2, "eval.num_workers": 2})
    clips = [ClipRecord(f"c{i % 2}/{i}.avi", i % 2, str(fixtures.write_corrupt_video(tmp_path / f"{i}.avi", seed=i)))
             for i in range(16)]
    info, stage = SplitInfo("synthetic", "train", ("c0", "c1")), make_stage(config)
    train_loader = _RecordingLoader(input_pipeline.make_train_loader(config, clips, info, stage.train_loader_mode()))
    run_ = loop.StageRun(
        config, tmp_path / "run", stage, data=None, state={}, state_sharding={},
        batch_sharding=parallel.batch_sharding(parallel.make_mesh(1)), train_step=None, eval_step=None,
        plateau_step=None, teacher_vars=None, train_loader=train_loader, total_steps=2,
        checkpointer=checkpointing.StageCheckpointer(tmp_path / "run" / "checkpoints", best_metric="val_top1",
                                                     async_save=False),
        parameters=0)
    before = set(multiprocessing.active_children())
    with pytest.raises(InputError, match="not a readable video"):
        loop.train(run_)
    run_.checkpointer.close()
    assert [it.closed for it in train_loader.iterators] == [True]

    eval_loaders = []
    make_eval_loader = input_pipeline.make_eval_loader
    monkeypatch.setattr(input_pipeline, "make_eval_loader",
                        lambda *args: eval_loaders.append(_RecordingLoader(make_eval_loader(*args))) or eval_loaders[-1])
    run_.data = type("Data", (), {"info": info})
    with pytest.raises(InputError, match="not a readable video"):
        loop.evaluate(run_, {}, clips, "val")
    assert [it.closed for loader in eval_loaders for it in loader.iterators] == [True]
    assert set(multiprocessing.active_children()) <= before  # the workers are gone, not left to the collector
