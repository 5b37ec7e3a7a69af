"""The reproduction suite: each row's config is its recipe plus exactly its named changes; the runner
trains rows in dependency order, reuses only what was trained under the same config, and writes its table,
JSON and chart; the cross-dataset SSL pool and the Zero-DCE row work through the public code."""

import json
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from actlumos_jax.checkpoint_compat import CheckpointError
from actlumos_jax.train import fingerprint, input_pipeline
from actlumos_jax.train.stages import make_stage
from bench import reproduce
from configs import base
from configs import reproduce as rows
from data_pipelines.bad_input import InputError

ROOT = Path(__file__).resolve().parents[1]


def _flat(config) -> dict:
    return fingerprint.resolved(json.loads(config.to_json_best_effort()))


@pytest.mark.parametrize("name", sorted(rows.ROWS))
def test_a_row_is_its_recipe_plus_exactly_its_named_changes(name, tmp_path):
    row = rows.ROWS[name]
    config = rows.get_config(f"row={name},runs={tmp_path}")
    if row.stage == "zero_dce":
        assert config.stage == "zero_dce" and config.zero_dce.steps > 0
        return
    base.validate(config)
    recipe = rows._RECIPES[row.stage]("")
    changed = {k for k in set(_flat(config)) | set(_flat(recipe)) if _flat(config).get(k) != _flat(recipe).get(k)}
    expected = {key for key, _ in row.changes}
    links = {"kd.teacher_workdir": row.teacher, "init.student_workdir": row.ssl,
             "init.backbone_from_teacher": row.backbone_from}
    expected |= {k for k, dep in links.items() if dep} | ({"enhance"} if row.zero_dce else set())
    # A change of a whole sub-dict (the enhancement) shows as its leaves.
    assert {k for k in changed if not any(k.startswith(e + ".") or k == e for e in expected)} == set()
    assert all(any(k == e or k.startswith(e + ".") for k in changed) for e in expected), (expected, changed)
    for key, dep in links.items():
        if dep:
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == str(tmp_path / dep)
    if row.zero_dce:
        assert config.enhance.to_dict() == {"method": "zero_dce",
                                            "zero_dce_weights": str(tmp_path / row.zero_dce / "zero_dce.npz")}


def test_rows_train_after_what_they_build_on():
    assert rows.depends_on("student_ssl_kd") == ["teacher_dff", "ssl_spatiotemporal", "student_ssl_kd"]
    assert rows.depends_on("student_dlkdd") == ["zero_dce", "teacher_dlkdd", "student_dlkdd"]
    assert rows.depends_on("student_kd_only") == ["teacher_dff", "student_kd_only"]
    for experiment in reproduce.EXPERIMENTS.values():
        for row in experiment.rows:
            assert row in rows.ROWS


def test_the_titles_say_what_was_trained(tmp_path):
    titles = {name: make_stage(rows.get_config(f"row={name},runs={tmp_path}")).row_title()
              for name, row in rows.ROWS.items() if row.stage != "zero_dce"}
    assert titles["student_kd_only"] == "Student: KD only (dark)"
    assert titles["student_ssl_only"] == "Student: SSL only (dark)"
    assert titles["teacher_dff_no_supcon"] == "Teacher: DFF, CE only (dark + retinex)"
    assert titles["teacher_darklight"] == "Teacher: concat, CE only (dark + gamma)"
    assert titles["teacher_dlkdd"] == "Teacher: one stream, CE only (zero_dce)"
    assert titles["ssl_pool_combined"] == "Student: SSL pretraining (spatiotemporal, both datasets, dark)"


def test_a_paper_size_row_starts_from_the_ig65m_backbone(tmp_path):
    teacher = rows.get_config(f"row=teacher_dff,runs={tmp_path},size=paper,ig65m=/w/ig65m")
    assert teacher.init.backbone_checkpoint == "/w/ig65m" and not teacher.init.backbone_from_teacher
    student = rows.get_config(f"row=student_ssl_kd,runs={tmp_path},size=paper,ig65m=/w/ig65m")
    assert student.init.student_workdir.endswith("ssl_spatiotemporal") and not student.init.backbone_checkpoint


def test_an_unknown_row_is_named():
    with pytest.raises(InputError, match="row='teacher_dfff' is not a row"):
        rows.get_config("row=teacher_dfff")


# --------------------------------------------------------- the SSL pool


def _ssl_config(pool: str, **other):
    c = rows.get_config("row=ssl_spatiotemporal,preset=tiny")
    c.ssl.pool = pool
    for k, v in other.items():
        c.ssl.other[k] = v
    return c


def test_the_ssl_pool_draws_on_the_other_dataset_with_its_labels_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLUMOS_DATA_DIR", str(tmp_path))
    target = _ssl_config("target")
    data = input_pipeline.read_stage_data(target)
    own = make_stage(target).training_source(data.train, data.test)
    other = make_stage(_ssl_config("other")).training_source(data.train, data.test)
    both = make_stage(_ssl_config("target+other")).training_source(data.train, data.test)
    assert own == data.train
    # The other set: every clip of its train and test lists (the tiny preset: 33), from another root.
    assert len(other) == 33 and {r.label for r in other} == {0}
    assert not {r.path for r in other} & {r.path for r in [*data.train, *data.test, *data.val]}
    assert both == list(data.train) + other
    # The loader reads the pooled clips: one SSL batch of fast and slow views.
    config = _ssl_config("target+other")
    loader = input_pipeline.make_train_loader(config, both, data.info, "ssl")
    batch = next(iter(loader))
    assert batch["fast"].shape[0] == config.train.batch_size and batch["fast"].dtype == np.uint8


def test_the_ssl_pool_refuses_the_target_itself():
    c = _ssl_config("other", synthetic_seed=0)
    with pytest.raises(InputError, match="names the target dataset itself"):
        input_pipeline.read_unlabeled_pool(c)


def test_a_real_other_dataset_needs_its_root():
    c = _ssl_config("target+other", name="dark48")
    with pytest.raises(InputError, match="config.ssl.other.root"):
        base.validate(c)


# ------------------------------------------------------------ Zero-DCE


def test_the_zero_dce_row_trains_saves_and_is_reused_only_under_its_config(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLUMOS_DATA_DIR", str(tmp_path / "data"))
    arg = "preset=tiny"
    sets = ["zero_dce.steps=2", "zero_dce.size=16", "zero_dce.batch_size=2"]
    done = reproduce.train_row("zero_dce", tmp_path / "runs", 0, arg, sets)
    weights = tmp_path / "runs" / "zero_dce" / "zero_dce.npz"
    assert done["num_frames"] == 2 * 22 and weights.is_file()  # 2 frames of the tiny preset's 22 training clips
    from actlumos_jax import enhance  # pylint: disable=g-import-not-at-top

    x = np.full((1, 2, 8, 8, 3), 0.1, np.float32)
    y = np.asarray(enhance.enhance(x, "zero_dce", zero_dce_weights=str(weights)))
    assert y.shape == x.shape and np.isfinite(y).all()
    mtime = weights.stat().st_mtime_ns
    reproduce.train_row("zero_dce", tmp_path / "runs", 0, arg, sets)
    assert weights.stat().st_mtime_ns == mtime
    with pytest.raises(CheckpointError, match="zero_dce.steps: stored 2, now 3"):
        reproduce.train_row("zero_dce", tmp_path / "runs", 0, arg, ["zero_dce.steps=3", *sets[1:]])


def test_set_names_a_key_the_row_does_not_have(tmp_path):
    with pytest.raises(InputError, match="--set optim.learnin_rate"):
        reproduce.row_config("teacher_dff", tmp_path, 0, "", ["optim.learnin_rate=1"])


# ------------------------------------------------------- the runner, end to end

# The tiny preset's single training actor after the validation carve: one clip per class per batch.
TINY = ["--arg", "preset=tiny", "--set", "train.num_steps=1", "--set", "train.batch_size=8",
        "--set", "train.clips_per_class=1", "--set", "data.num_workers=0", "--set", "enhance.method=gamma",
        "--set", "checkpoint.async_save=false"]


def _reproduce(env, out, *args, check=True):
    cmd = [sys.executable, "-m", "bench.reproduce", *args, "--out", str(out), *TINY]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if check and proc.returncode:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    import os  # pylint: disable=g-import-not-at-top

    shared = tmp_path_factory.mktemp("shared")
    env = dict(os.environ, ACTLUMOS_DATA_DIR=str(shared / "data"),
               JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    out = tmp_path_factory.mktemp("reproduce")
    chosen = _reproduce(env, out, "--rows", "student_kd_only,student_ssl_combined_kd", "--seeds", "1")
    folder = out / "synthetic-tiny" / "rows"
    chosen_result = (json.loads((folder / "results.json").read_text()), (folder / "chart.png").read_bytes())
    # A second seed of one row the first command trained: one new run; seed 0 is reused.
    seeds = _reproduce(env, out, *TEACHER_TWO_SEEDS)
    return env, out, chosen_result, seeds


TEACHER_TWO_SEEDS = ("--rows", "teacher_dff", "--seeds", "2")


def test_the_kd_only_and_the_cross_dataset_ssl_students_train(suite):
    _, out, (result, chart), _ = suite
    runs = out / "synthetic-tiny" / "split1" / "seed0"
    for row in ("teacher_dff", "ssl_pool_combined", "student_kd_only", "student_ssl_combined_kd"):
        done = json.loads((runs / row / "final_metrics.json").read_text())
        assert done["steps"] == 1, row
    kd_only = json.loads((runs / "student_kd_only" / "final_metrics.json").read_text())
    assert kd_only["title"] == "Student: KD only (dark)"
    assert kd_only["config"]["init"]["student_workdir"] == ""
    assert kd_only["config"]["init"]["backbone_from_teacher"] == str(runs / "teacher_dff")
    combined = json.loads((runs / "student_ssl_combined_kd" / "final_metrics.json").read_text())
    assert combined["config"]["init"]["student_workdir"] == str(runs / "ssl_pool_combined")
    assert not (runs / "ssl_spatiotemporal").exists()  # only what the chosen rows build on is trained
    assert list(result["rows"]) == ["student_kd_only", "student_ssl_combined_kd"]
    assert chart[:4] == b"\x89PNG"


def test_the_table_is_the_mean_and_std_over_seeds_of_each_runs_metrics(suite):
    _, out, _, proc = suite
    folder = out / "synthetic-tiny" / "rows"
    result = json.loads((folder / "results.json").read_text())
    table = (folder / "table.md").read_text()
    assert table in proc.stdout
    runs = result["rows"]["teacher_dff"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    top1 = np.array([json.loads((out / "synthetic-tiny" / "split1" / f"seed{s}" / "teacher_dff" / "final_metrics.json")
                                .read_text())["metrics"]["test_top1"] for s in (0, 1)])
    line = next(l for l in table.splitlines() if l.startswith(f"| {rows.ROWS['teacher_dff'].title} |"))
    assert f"| {top1.mean():.1f} ± {top1.std(ddof=1):.1f} |" in line and "| 96.79 |" in line  # the paper's figure
    assert "Protocol: best val_top1" in table


def test_a_finished_run_is_reused_and_a_changed_config_is_refused(suite):
    env, out, _, _ = suite
    done = out / "synthetic-tiny" / "split1" / "seed1" / "teacher_dff" / "final_metrics.json"
    before = done.stat().st_mtime_ns
    again = _reproduce(env, out, *TEACHER_TWO_SEEDS)
    assert done.stat().st_mtime_ns == before and "teacher:" not in again.stderr
    changed = _reproduce(env, out, *TEACHER_TWO_SEEDS, "--set", "loss.supcon_temperature=0.2", check=False)
    assert changed.returncode != 0 and "Traceback" not in changed.stderr
    assert "loss.supcon_temperature: stored 0.1, now 0.2" in changed.stderr


def test_an_ordering_is_the_mean_paired_difference_with_both_standard_errors():
    lower = [{"seed": s, "split": k, "test_top1": v} for s, vals in enumerate([(10, 14), (20, 20), (30, 26)])
             for k, v in zip((1, 2), vals)]
    higher = [{"seed": s, "split": k, "test_top1": v} for s, vals in enumerate([(30, 30), (25, 25), (50, 40)])
              for k, v in zip((1, 2), vals)]
    o = reproduce.ordering(lower, higher, clips=200)
    # Per seed, the mean over the two splits: lower 12, 20, 28; higher 30, 25, 45; differences 18, 5, 17.
    d = np.array([18.0, 5.0, 17.0])
    assert o["delta"] == pytest.approx(d.mean()) and o["held"] == 3 and o["seeds"] == 3
    assert o["se_seeds"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    pa, pb = 100 / 3 / 100, 20 / 100
    assert o["se_clips"] == pytest.approx(100 * np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / 200))
    assert o["z"] == pytest.approx(d.mean() / np.hypot(o["se_seeds"], o["se_clips"]))
