"""main.py end to end, as subprocesses: resumption after a kill, SIGTERM, NaN, two processes, bad configs.

All runs share one synthetic dataset and one persistent XLA cache, so only the
first run of each program shape pays for compilation.
"""

import json
import signal
import socket
import subprocess
import time

import jax
import numpy as np
import pytest

from tests.train.main_runs import ROOT, assert_trees_equal, main_cmd, restored_state, run, saved_steps


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
    expected, got = restored_state(reference, 10), restored_state(resumed, 10)
    assert_trees_equal(expected["params"], got["params"])
    assert_trees_equal(expected["opt_state"], got["opt_state"])
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
    state = restored_state(workdir, max(steps))
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
    # Two processes of two devices each form one 4-device mesh; only process 0 reports.
    assert "4 devices on 2 processes" in outputs[0][0] and "devices on" not in outputs[1][0]
    # Both processes share one data slice each: the grain state of both is in the checkpoint.
    data_files = sorted(p.name for p in (workdir / "checkpoints" / "3" / "data").iterdir() if p.name.startswith("process_"))
    assert data_files == ["process_0-of-2.json", "process_1-of-2.json"]


@pytest.mark.parametrize("flag, message", [
    ("--config.no_such_key=1", "no_such_key"),
    ("--config.train.batch_size=eight", "batch_size"),
    ("--config.dataset.on_bad_input=ignore", "on_bad_input must be one of"),
    ("--config.eval.num_workers=-2", "eval.num_workers must be -1"),
])
def test_bad_config_is_rejected_with_a_clear_message(env, tmp_path, flag, message):
    proc = run(main_cmd("teacher.py", tmp_path / "bad", flag), env, check=False, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "bad" / "checkpoints").exists()
