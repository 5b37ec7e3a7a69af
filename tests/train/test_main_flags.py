"""main.py's command line behind the error boundary: each mistake is one ``error:`` line, exit 2, no traceback.

Every case fails while the flags are parsed, before anything is built or compiled,
so each run costs only main.py's imports.
"""

import subprocess
import sys

import pytest

from tests.train.main_runs import ROOT, main_cmd, run

MAIN = [sys.executable, str(ROOT / "main.py")]
TEACHER = f"--config={ROOT / 'configs' / 'teacher.py'}"


def _refused(cmd, env, workdir):
    proc = run(cmd, env, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert not workdir.exists()
    return lines[0]


@pytest.mark.parametrize("args, first_line", [
    # A typo in the config arg: configs/base.py's message, without ml_collections' traceback around it.
    ([f"{TEACHER}:datset=x"], f"error: {TEACHER}:datset=x: unknown config arg 'datset'; "
                              "known: ['dataset', 'preset', 'root', 'size', 'split']"),
    ([f"{TEACHER}:split=two"], f"error: {TEACHER}:split=two: config arg split='two' is not an integer"),
    # An unknown key: the nearest one and the keys that exist, not a raw AttributeError.
    ([TEACHER, "--config.optim.learnin_rate=1"],
     "error: --config.optim.learnin_rate=1: config.optim has no key 'learnin_rate'; "
     "did you mean --config.optim.learning_rate? its keys: b1, b2, clip_grad_norm, "),
    ([TEACHER, "--config.no_such_key=1"], "error: --config.no_such_key=1: config has no key 'no_such_key'; its keys: "),
    ([TEACHER, "--config.train.batch_size.x=1"],
     "error: --config.train.batch_size.x=1: config.train.batch_size is int "),
    # The default config (kd_student.py) is loaded behind the boundary too, overrides of its stages included.
    (["--config.prerequisites.teacher.optim.learning_rat=1"],
     "error: --config.prerequisites.teacher.optim.learning_rat=1: config.prerequisites.teacher.optim has no key "
     "'learning_rat'; did you mean --config.prerequisites.teacher.optim.learning_rate?"),
    # A value of the wrong type: what the field takes and what the config has.
    ([TEACHER, "--config.train.epochs=abc"], "error: --config.train.epochs=abc: config.train.epochs takes an integer "
                                             "(the config has "),
    ([TEACHER, "--config.data.resize=abc"], "error: --config.data.resize=abc: config.data.resize takes a tuple of "
                                            "numbers (the config has ("),
    ([TEACHER, "--config.train=1"], "error: --config.train=1: config.train is a group of settings, not one value; "
                                    "set its keys with --config.train.KEY=VALUE: batch_size, "),
    # A config file that is not there, an unknown flag, a forgotten --config=, overrides before --config.
    (["--config=configs/nope.py"], "error: --config=configs/nope.py: no config file 'configs/nope.py' "),
    ([TEACHER, "--workdr=x"], "error: Unknown command line flag 'workdr'. Did you mean: workdir ?"),
    ([str(ROOT / "configs" / "teacher.py")], "error: unexpected arguments "),
    (["--config.train.epochs=1", TEACHER], "error: Found --config.train.epochs=1 in argv before a value for --config "
                                           "was specified: put --config=FILE before its --config. overrides"),
])
def test_a_command_line_mistake_is_one_line(env, tmp_path, args, first_line):
    workdir = tmp_path / "never"
    line = _refused([*MAIN, *args, f"--workdir={workdir}"], env, workdir)
    assert line.startswith(first_line), line


def test_the_tiny_overrides_of_the_tests_are_checked_too(env, tmp_path):
    # main_cmd's own overrides (tuples among them) pass; the bad one is named.
    line = _refused(main_cmd("teacher.py", tmp_path / "never", "--config.optim.learning_rate=fast"), env,
                    tmp_path / "never")
    assert line == ("error: --config.optim.learning_rate=fast: config.optim.learning_rate takes a number "
                    f"(the config has {_teacher_learning_rate()!r}), not 'fast'")


def _teacher_learning_rate():
    from configs import teacher
    return teacher.get_config("preset=tiny").optim.learning_rate


def test_verbose_shows_the_traceback(env, tmp_path):
    proc = run([*MAIN, TEACHER, "--config.train.epochs=abc", "--verbose", f"--workdir={tmp_path / 'never'}"], env,
               check=False, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "IllegalFlagValueError" in proc.stderr


def test_a_good_command_line_reaches_the_config_checks(env, tmp_path):
    # Parsing passes (the default config named for the user), then base.validate's own message.
    line = _refused([*MAIN, "--config.dataset.name=arid10", f"--workdir={tmp_path / 'never'}"], env,
                    tmp_path / "never")
    assert line.startswith("error: dataset 'arid10' needs its root")


@pytest.mark.parametrize("args, first_line", [
    ([TEACHER, "--config.train.clips_per_class=0"],
     "error: config.train.clips_per_class must be >= 1 (the clips of each class in a class-balanced batch), got 0"),
    ([TEACHER, "--config.data.resize=(1, 2)"],
     "error: config.data.resize=(1, 2) is smaller than config.data.crop=32: "),
    # The KD pipeline told not to train its prerequisites, with none finished: the stage dir and the flag.
    (["--config.pipeline.train_prerequisites=False"],
     "error: the KD stage needs a finished teacher stage in {workdir}/teacher (no final_metrics.json there), and "
     "config.pipeline.train_prerequisites=False forbids training it here: drop "
     "--config.pipeline.train_prerequisites=False to train it first, or point --config.kd.teacher_workdir at "),
])
def test_a_config_that_cannot_run_is_one_line(env, tmp_path, args, first_line):
    workdir = tmp_path / "never"
    line = _refused([*MAIN, *args, f"--workdir={workdir}"], env, workdir)
    assert line.startswith(first_line.format(workdir=workdir)), line


def test_a_file_that_is_not_a_config_is_named(env, tmp_path):
    notes = tmp_path / "notes.py"
    notes.write_text("x = 1\n")
    line = _refused([*MAIN, f"--config={notes}", f"--workdir={tmp_path / 'never'}"], env, tmp_path / "never")
    assert line.startswith(f"error: --config={notes}: '{notes}' is not a config file: it defines no get_config(); "
                           "the configs are "), line
