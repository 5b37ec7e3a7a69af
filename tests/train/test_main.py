"""main.py end to end, as subprocesses: resumption after a kill, SIGTERM, NaN, two processes, bad configs.

All runs share one synthetic dataset and one persistent XLA cache, so only the
first run of each program shape pays for compilation.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "--config.data.num_frames=8", "--config.data.resize=(36, 48)", "--config.data.crop=32",
    "--config.data.num_workers=0", "--config.model.backbone.width=0.125", "--config.model.encoder.num_heads=2",
    "--config.model.projection_dim=8", "--config.model.fusion_hidden=8", "--config.train.batch_size=8",
    "--config.enhance.method=gamma", "--config.log_every_steps=1",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared")
    env = dict(os.environ, ACTLUMOS_DATA_DIR=str(shared / "data"), JAX_COMPILATION_CACHE_DIR=str(shared / "xla"),
               JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONUNBUFFERED="1")
    return env


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


def restored_params(workdir: Path, step: int) -> dict:
    with ocp.CheckpointManager(workdir / "checkpoints", item_handlers={"state": ocp.PyTreeCheckpointHandler()},
                               options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
        meta = manager.item_metadata(step)["state"]
        args = jax_tree_map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), meta)
        state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(restore_args=args)))["state"]
    return state


def jax_tree_map(fn, tree):
    import jax
    return jax.tree.map(fn, tree)


def assert_trees_equal(a, b):
    import jax
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) and leaves_a
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


STEPS = ["--config.train.num_steps=10", "--config.checkpoint.every_steps=2", "--config.checkpoint.async_save=False"]


def test_killed_run_resumes_to_the_same_parameters(env, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run(main_cmd("ssl_student.py", reference, *STEPS), env)

    proc = subprocess.Popen(main_cmd("ssl_student.py", resumed, *STEPS), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not [s for s in saved_steps(resumed) if s >= 4] and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = saved_steps(resumed)
    assert killed_at and max(killed_at) < 10, f"the run was not killed mid-training: {killed_at}"

    out = run(main_cmd("ssl_student.py", resumed, *STEPS), env)
    assert (resumed / "final_metrics.json").is_file()
    assert_trees_equal(restored_params(reference, 10)["params"], restored_params(resumed, 10)["params"])
    assert_trees_equal(restored_params(reference, 10)["opt_state"], restored_params(resumed, 10)["opt_state"])
    # The metrics log shows the resumed run starting after the kill, not from 0.
    train_steps = [r["step"] for r in map(json.loads, (resumed / "metrics.jsonl").read_text().splitlines())
                   if r["kind"] == "train"]
    assert train_steps.count(1) == 1 and train_steps[-1] == 10, out.stdout


def test_sigterm_saves_a_checkpoint_and_exits(env, tmp_path):
    workdir = tmp_path / "term"
    proc = subprocess.Popen(main_cmd("ssl_student.py", workdir, "--config.train.num_steps=1000",
                                     "--config.checkpoint.every_steps=1000"),
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if (workdir / "metrics.jsonl").is_file() and "train" in (workdir / "metrics.jsonl").read_text():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "SIGTERM: saved step" in stderr
    steps = saved_steps(workdir)
    assert len(steps) == 1 and 1 <= steps[0] < 1000


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(env, tmp_path):
    workdir = tmp_path / "nan"
    proc = run(main_cmd("ssl_student.py", workdir, "--config.train.num_steps=20", "--config.checkpoint.every_steps=1",
                        "--config.checkpoint.async_save=False", "--config.optim.schedule=constant",
                        "--config.optim.clip_grad_norm=0.0", "--config.optim.learning_rate=1e30"),
               env, check=False)
    assert proc.returncode != 0
    assert "loss is nan" in proc.stderr or "loss is inf" in proc.stderr, proc.stderr[-3000:]
    steps = saved_steps(workdir)
    assert steps, "no good checkpoint was kept"
    state = restored_params(workdir, max(steps))
    import jax
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))
    assert not (workdir / "final_metrics.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_and_checkpoint(env, tmp_path):
    workdir, port = tmp_path / "multi", _free_port()
    procs = [subprocess.Popen(main_cmd("ssl_student.py", workdir, "--config.train.num_steps=3",
                                       "--config.checkpoint.every_steps=3", f"--coordinator_address=127.0.0.1:{port}",
                                       "--num_processes=2", f"--process_id={i}"),
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-5000:]
    assert saved_steps(workdir)[-1] == 3  # plus the end-of-epoch checkpoint at step 2
    assert "4 devices on 2 processes" in outputs[0][1] or "ssl:" in outputs[0][0]
    # Both processes share one data slice each: the grain state of both is in the checkpoint.
    data_files = sorted(p.name for p in (workdir / "checkpoints" / "3" / "data").iterdir() if p.name.startswith("process_"))
    assert data_files == ["process_0-of-2.json", "process_1-of-2.json"]


@pytest.mark.parametrize("flag, message", [
    ("--config.no_such_key=1", "no_such_key"),
    ("--config.train.batch_size=eight", "batch_size"),
    ("--config.dataset.on_bad_input=ignore", "on_bad_input must be one of"),
])
def test_bad_config_is_rejected_with_a_clear_message(env, tmp_path, flag, message):
    proc = run(main_cmd("teacher.py", tmp_path / "bad", flag), env, check=False, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "bad" / "checkpoints").exists()


PIPELINE_STEPS = ["--config.train.num_steps=2", "--config.prerequisites.teacher.train.num_steps=2",
                  "--config.prerequisites.ssl.train.num_steps=2"]


@pytest.fixture(scope="module")
def pipeline(env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    proc = run(main_cmd("kd_student.py", workdir, *PIPELINE_STEPS), env, timeout=1200)
    return workdir, proc


def test_kd_pipeline_trains_missing_prerequisites_and_prints_table_5(pipeline):
    workdir, proc = pipeline
    assert "no finished teacher stage" in proc.stdout and "no finished ssl stage" in proc.stdout
    for stage in ("teacher", "ssl_student", "ssl_only_student", "kd_student"):
        result = json.loads((workdir / stage / "final_metrics.json").read_text())
        assert result["steps"] == 2
    table = proc.stdout[proc.stdout.index("Results on synthetic"):]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == [
        "Teacher: one stream, CE only (retinex)", "Student: SSL only (dark)", "Student: SSL + KD (dark)"]
    for row in rows:
        params, top1, top5 = (float(x) for x in row.split("|")[2:5])
        assert params > 0 and 0 <= top1 <= top5 <= 100
    kd = json.loads((workdir / "kd_student" / "final_metrics.json").read_text())
    teacher = json.loads((workdir / "teacher" / "final_metrics.json").read_text())
    # The demo's teacher is one retinex stream: the student's architecture exactly, with no fusion gate.
    assert kd["parameters"] == teacher["parameters"]


def test_kd_refuses_a_teacher_workdir_that_holds_another_stage(pipeline, env, tmp_path):
    workdir, _ = pipeline
    proc = run(main_cmd("kd_student.py", tmp_path / "kd", *PIPELINE_STEPS,
                        f"--config.kd.teacher_workdir={workdir / 'ssl_student'}",
                        f"--config.init.student_workdir={workdir / 'ssl_student'}"), env, check=False)
    assert proc.returncode != 0
    assert "was written by stage 'ssl', not by a teacher" in proc.stderr, proc.stderr[-3000:]


def test_the_ssl_student_backbone_starts_from_the_teacher(pipeline):
    import ml_collections
    from flax import nnx

    from actlumos_jax.train import checkpointing, loop

    workdir, proc = pipeline
    assert "the SSL student's backbone starts from the teacher's" in proc.stdout
    ssl_dir = workdir / "ssl_student" / "checkpoints"
    saved = ml_collections.ConfigDict(
        checkpointing.read_json_item(ssl_dir, checkpointing.chosen_step(ssl_dir), "config"))
    assert saved.init.backbone_from_teacher == str(workdir / "teacher")
    student = loop._model_for_config(saved.model, 11, "student", 7)
    _, teacher, _ = loop.load_teacher(workdir / "teacher", 11)
    before = nnx.to_pure_dict(nnx.state(student.backbone, nnx.Param))
    loop.load_backbone_from_teacher(student, workdir / "teacher", 11)
    after = nnx.to_pure_dict(nnx.state(student.backbone, nnx.Param))
    assert_trees_equal(after, nnx.to_pure_dict(teacher.params)["backbone"])
    assert not np.allclose(before["stem"]["spatial"]["kernel"], after["stem"]["spatial"]["kernel"])
    assert_trees_equal(nnx.to_pure_dict(nnx.state(student.backbone, nnx.BatchStat)),
                       nnx.to_pure_dict(teacher.batch_stats)["backbone"])
    saved.model.backbone.width = 0.25
    wider = nnx.eval_shape(lambda: loop._model_for_config(saved.model, 11, "student", 7))
    with pytest.raises(checkpointing.CheckpointError, match="does not fit this model's backbone"):
        loop.load_backbone_from_teacher(wider, workdir / "teacher", 11)


def test_teacher_checkpoint_of_another_architecture_is_refused(pipeline):
    import ml_collections
    from flax import nnx

    from actlumos_jax.train import checkpointing, loop

    workdir, _ = pipeline
    directory = workdir / "teacher" / "checkpoints"
    step = checkpointing.chosen_step(directory, "val_top1")
    saved = ml_collections.ConfigDict(checkpointing.read_json_item(directory, step, "config"))
    saved.model.backbone.width = 0.25  # the checkpoint's teacher is 0.125 wide
    wider = nnx.eval_shape(lambda: loop._model_for_config(saved.model, 11, "teacher", 0))
    with pytest.raises(checkpointing.CheckpointError, match=r"does not fit this model's architecture"):
        checkpointing.load_model_variables(directory, step, wider)
    saved.model.backbone.width = 0.125
    frozen = checkpointing.load_model_variables(directory, step, loop._model_for_config(saved.model, 11, "teacher", 0))
    _, frozen_again, teacher_config = loop.load_teacher(workdir / "teacher", 11)
    assert teacher_config["stage"] == "teacher"
    assert_trees_equal(nnx.to_pure_dict(frozen.params), nnx.to_pure_dict(frozen_again.params))


def test_the_teacher_row_names_the_teacher_that_was_trained():
    from actlumos_jax.train import pipeline
    from configs import teacher

    assert pipeline.teacher_title(teacher.get_config("size=paper")) == "Teacher: DFF + SupCon (dark + retinex)"
    assert pipeline.teacher_title(teacher.get_config("size=tiny")) == "Teacher: one stream, CE only (retinex)"
