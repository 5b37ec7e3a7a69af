"""main.py stopped by bad input while grain's worker processes run: the message, and nothing after it."""

from tests.data import fixtures
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
