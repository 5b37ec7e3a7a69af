"""The paper's tables, each one command: trains every row over seeds and splits and writes the table.

    python -m bench.reproduce table5 [table7 ...|all] [--seeds 3] [--splits 1,2,3]
        [--arg dataset=arid10,root=/data/ARID,size=paper,ig65m=/w/ig65m] [--set train.epochs=10]

Experiments: table5 (the KD pipeline), table6 (teacher fusion, and the student
distilled from each teacher), table7 (SSL variants under KD), table8 (SupCon on
the DFF teacher), fig5 (the SSL pool's source) and baselines (DarkLight, DL-KDD).
Each row is a named config of ``configs/reproduce.py``; the rows it builds on
are trained first. Runs live in ``OUT/<dataset>-<size>/split<k>/seed<s>/<row>``
and are shared by the experiments: a finished run is reused only when its
resolved config equals the one asked for (otherwise the run stops and says
what differs). Writes ``OUT/<dataset>-<size>/<experiment>/``: ``results.json``
(every run's metrics), ``table.md`` (the paper's layout, mean ± std over seeds
of the mean over splits, the paper's figures beside) and ``chart.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from configs import reproduce as rows_config

# The paper's (top-1, top-5) per row on ARID V1.0, ARID V1.5 and Dark48 (Tables 2-8).
PAPER_DATASETS = {"arid10": "ARID V1.0", "arid15": "ARID V1.5", "dark48": "Dark48"}
PAPER = {
    "teacher_dff": {"arid10": (96.79, 99.91), "arid15": (87.53, 98.56), "dark48": (48.42, 75.99)},
    "student_ssl_only": {"arid10": (91.11, 98.21), "arid15": (82.15, 96.56), "dark48": (43.21, 71.98)},
    "student_ssl_kd": {"arid10": (96.92, 99.89), "arid15": (88.27, 99.12), "dark48": (48.96, 76.71)},
    "teacher_dark_only": {"arid10": (90.57, 98.72), "arid15": (82.91, 96.52), "dark48": (42.95, 70.83)},
    "teacher_retinex_only": {"arid10": (92.51, 99.81), "arid15": (85.73, 98.11), "dark48": (46.15, 73.82)},
    "teacher_concat": {"arid10": (94.82, 99.85), "arid15": (86.11, 98.34), "dark48": (48.02, 75.91)},
    "student_from_dark_only": {"arid10": (91.61, 99.05), "arid15": (83.47, 97.15), "dark48": (43.07, 71.17)},
    "student_from_retinex_only": {"arid10": (93.02, 99.79), "arid15": (85.89, 98.55), "dark48": (46.77, 73.95)},
    "student_from_concat": {"arid10": (95.88, 99.82), "arid15": (86.35, 98.45), "dark48": (48.32, 76.07)},
    "student_kd_only": {"arid10": (95.75, 99.85), "arid15": (87.36, 98.95), "dark48": (47.99, 75.80)},
    "student_ssl_spatial_kd": {"arid10": (96.10, 99.76), "arid15": (87.41, 98.98), "dark48": (48.05, 76.10)},
    "student_ssl_temporal_kd": {"arid10": (96.35, 99.85), "arid15": (87.80, 99.00), "dark48": (48.40, 76.30)},
    "teacher_dff_no_supcon": {"arid10": (96.30, 99.86), "arid15": (86.95, 98.34), "dark48": (47.72, 75.60)},
    # The paper's ActLumos student pretrains on ARID + Dark48 (Fig. 5's "combined" bars).
    "student_ssl_combined_kd": {"arid10": (96.92, 99.89), "arid15": (88.27, 99.12), "dark48": (48.96, 76.71)},
    "teacher_darklight": {"arid10": (94.04, 99.87), "arid15": (84.13, 97.34), "dark48": (39.08, 71.24)},
    "student_dlkdd": {"arid10": (97.64, None), "arid15": (88.12, None), "dark48": (52.26, 80.18)},
}


@dataclasses.dataclass(frozen=True)
class Experiment:
    title: str
    rows: tuple[str, ...]
    reference_row: str = ""   # drawn as a dashed line on the chart (Fig. 5's KD-only student)
    # The paper's orderings among the rows, (lower, higher): each is tested on the runs' top-1.
    orderings: tuple[tuple[str, str], ...] = ()


EXPERIMENTS = {
    "table5": Experiment("Table 5: the knowledge-distillation pipeline",
                         ("teacher_dff", "student_ssl_only", "student_ssl_kd"),
                         orderings=(("student_ssl_only", "student_ssl_kd"), ("teacher_dff", "student_ssl_kd"))),
    "table6": Experiment("Table 6: teacher fusion, and the SSL + KD student distilled from each teacher",
                         ("teacher_dark_only", "teacher_retinex_only", "teacher_concat", "teacher_dff",
                          "student_from_dark_only", "student_from_retinex_only", "student_from_concat",
                          "student_ssl_kd"),
                         orderings=(("teacher_dark_only", "teacher_retinex_only"), ("teacher_retinex_only", "teacher_concat"),
                                    ("teacher_concat", "teacher_dff"), ("student_from_dark_only", "student_from_retinex_only"),
                                    ("student_from_retinex_only", "student_from_concat"),
                                    ("student_from_concat", "student_ssl_kd"))),
    "table7": Experiment("Table 7: SSL variants of the student, KD fixed",
                         ("student_kd_only", "student_ssl_spatial_kd", "student_ssl_temporal_kd", "student_ssl_kd"),
                         orderings=(("student_kd_only", "student_ssl_kd"), ("student_ssl_spatial_kd", "student_ssl_kd"),
                                    ("student_ssl_temporal_kd", "student_ssl_kd"),
                                    ("student_ssl_spatial_kd", "student_ssl_temporal_kd"))),
    "table8": Experiment("Table 8: the DFF teacher with and without SupCon", ("teacher_dff_no_supcon", "teacher_dff"),
                         orderings=(("teacher_dff_no_supcon", "teacher_dff"),)),
    "fig5": Experiment("Fig. 5: the source of the SSL pool (target, other dataset, both), KD fixed",
                       ("student_kd_only", "student_ssl_kd", "student_ssl_other_kd", "student_ssl_combined_kd"),
                       reference_row="student_kd_only",
                       orderings=(("student_kd_only", "student_ssl_other_kd"), ("student_ssl_other_kd", "student_ssl_kd"),
                                  ("student_ssl_kd", "student_ssl_combined_kd"))),
    "baselines": Experiment("Baselines against ActLumos",
                            ("teacher_darklight", "teacher_dlkdd", "student_dlkdd", "teacher_dff", "student_ssl_kd"),
                            orderings=(("teacher_darklight", "teacher_dff"), ("teacher_darklight", "student_ssl_kd"),
                                       ("student_ssl_kd", "student_dlkdd"))),
}


# ------------------------------------------------------------------ runs


def row_config(row: str, runs: Path, seed: int, arg: str, sets: list[str]):
    config = rows_config.get_config(",".join(filter(None, [f"row={row}", f"runs={runs}", arg])))
    config.seed = seed
    for item in sets:
        _set(config, item)
    return config


def _set(config, item: str) -> None:
    from data_pipelines.bad_input import InputError  # pylint: disable=g-import-not-at-top

    key, sep, text = item.partition("=")
    if not sep:
        raise InputError(f"--set {item!r} is not key=value")
    *parents, leaf = key.split(".")
    node = config
    try:
        for name in parents:
            node = node[name]
        old = node[leaf]
    except (KeyError, AttributeError):
        raise InputError(f"--set {key}: the row config has no such key") from None
    try:
        value = text if isinstance(old, str) else json.loads(text)
        node[leaf] = type(old)(value) if isinstance(old, (bool, int, float)) and not isinstance(value, list) else value
    except (ValueError, TypeError) as e:
        raise InputError(f"--set {key}={text!r}: not a value for a {type(old).__name__} ({e})") from None


def train_row(row: str, runs: Path, seed: int, arg: str, sets: list[str]) -> dict:
    """Trains ``row`` in ``runs/row`` unless it is finished under the same config; its final metrics."""
    from actlumos_jax.train import loop  # pylint: disable=g-import-not-at-top
    from configs import base  # pylint: disable=g-import-not-at-top

    config = row_config(row, runs, seed, arg, sets)
    workdir = runs / row
    if config.stage == "zero_dce":
        return _train_zero_dce(config, workdir)
    base.validate(config)
    start = time.time()
    result = loop.run_stage(config, workdir)
    done = json.loads((workdir / "final_metrics.json").read_text())
    if "wall_seconds" not in done:  # first time: record how long it took
        done["wall_seconds"] = round(time.time() - start, 1)
        (workdir / "final_metrics.json").write_text(json.dumps(done, indent=2))
    score = f"test top-1 {result.metrics['test_top1']:.1f}" if "test_top1" in result.metrics else "done"
    print(f"  {row} (seed {seed}): {score}", flush=True)
    return done


def _train_zero_dce(config, workdir: Path) -> dict:
    """DCE-Net on the dark frames of the training split, without references (Zero-DCE's recipe)."""
    from actlumos_jax import zero_dce_train  # pylint: disable=g-import-not-at-top
    from actlumos_jax.train import fingerprint  # pylint: disable=g-import-not-at-top

    wanted = {"dataset": config.dataset.to_dict(), "seed": config.seed, "zero_dce": config.zero_dce.to_dict()}
    wanted = json.loads(json.dumps(wanted))
    done_file = workdir / "final_metrics.json"
    if done_file.is_file():
        done = json.loads(done_file.read_text())
        fingerprint.check_same(str(workdir), done["config"], wanted, "trained Zero-DCE curves")
        return done
    ds, z = config.dataset, config.zero_dce
    frames = zero_dce_train.read_frames(ds.name, root=ds.root or None, split=ds.split if ds.split >= 0 else None,
                                        synthetic_preset=ds.synthetic_preset, seed=ds.synthetic_seed,
                                        frames_per_clip=z.frames_per_clip, size=z.size)
    start = time.time()
    model, log = zero_dce_train.train(frames, steps=z.steps, batch_size=z.batch_size, seed=config.seed, lr=z.lr,
                                      log_every=max(z.steps // 4, 1))
    workdir.mkdir(parents=True, exist_ok=True)
    zero_dce_train.save_zero_dce(model, workdir / zero_dce_train.WEIGHTS_FILE, overwrite=True)
    done = {"stage": "zero_dce", "title": rows_config.ROWS["zero_dce"].title, "config": wanted, "log": log,
            "num_frames": len(frames), "wall_seconds": round(time.time() - start, 1), "metrics": {}}
    done_file.write_text(json.dumps(done, indent=2))
    return done


# --------------------------------------------------------------- results


def collect(experiment: Experiment, runs_dirs: dict[tuple[int, int], Path]) -> dict:
    """row -> {"title", "runs": [{split, seed, metrics...}]} from the runs' final_metrics.json."""
    out = {}
    for row in experiment.rows:
        entries = []
        for (split, seed), runs in sorted(runs_dirs.items()):
            done = json.loads((runs / row / "final_metrics.json").read_text())
            entries.append({"split": split, "seed": seed, "title": done["title"], "steps": done["steps"],
                            "selected_step": done.get("selected_step"), "parameters": done["parameters"],
                            "protocol": done.get("protocol", ""), "wall_seconds": done.get("wall_seconds"),
                            **done["metrics"], **done.get("val", {})})
        out[row] = {"title": rows_config.ROWS[row].title, "runs": entries}
    return out


def seed_means(entries: list[dict], key: str) -> np.ndarray:
    """Per seed, the mean over splits of ``key``: the paper averages its splits, seeds give the spread."""
    seeds = sorted({e["seed"] for e in entries})
    return np.array([np.mean([e[key] for e in entries if e["seed"] == s]) for s in seeds])


def ordering(lower: list[dict], higher: list[dict], clips: float) -> dict:
    """How far ``higher`` leads ``lower`` in test top-1, with its standard error and the seeds where it held."""
    a, b = seed_means(higher, "test_top1"), seed_means(lower, "test_top1")
    d = a - b
    se_seeds = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    pa, pb = a.mean() / 100, b.mean() / 100
    se_clips = 100 * np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / max(clips, 1))
    se = float(np.hypot(se_seeds, se_clips)) if len(d) > 1 else se_clips
    return {"delta": float(d.mean()), "se_seeds": float(se_seeds), "se_clips": float(se_clips),
            "z": float(d.mean() / se) if se > 0 else float("nan"), "held": int((d > 0).sum()), "seeds": len(d)}


def _mean_std(values: np.ndarray) -> str:
    if len(values) < 2:
        return f"{values.mean():.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def table(name: str, experiment: Experiment, results: dict, dataset: str) -> str:
    paper_ds = PAPER_DATASETS.get(dataset, "ARID V1.0")
    paper_key = dataset if dataset in PAPER_DATASETS else "arid10"
    any_entries = next(iter(results.values()))["runs"]
    seeds = sorted({e["seed"] for e in any_entries})
    splits = sorted({e["split"] for e in any_entries})
    lines = [f"### {experiment.title}", "",
             f"| Row | What was trained | Params (M) | Top-1 | Top-5 | Top-1 per seed | Paper top-1 ({paper_ds}) "
             "| Paper top-5 |",
             "|---|---|---|---|---|---|---|---|"]
    for row, r in results.items():
        e = r["runs"]
        paper = PAPER.get(row, {}).get(paper_key, (None, None))
        fmt = lambda v: "" if v is None else f"{v:.2f}"
        lines.append(f"| {r['title']} | {e[0]['title']} | {e[0]['parameters'] / 1e6:.2f} | "
                     f"{_mean_std(seed_means(e, 'test_top1'))} | {_mean_std(seed_means(e, 'test_top5'))} | "
                     f"{' / '.join(f'{v:.1f}' for v in seed_means(e, 'test_top1'))} | {fmt(paper[0])} | {fmt(paper[1])} |")
    clips = any_entries[0].get("test_clips", 0)
    walls = [e["wall_seconds"] for r in results.values() for e in r["runs"] if e.get("wall_seconds")]
    lines += ["", f"`python -m bench.reproduce {name}`: {dataset}, split(s) {', '.join(map(str, splits))}, "
              f"seeds {', '.join(map(str, seeds))}; mean ± sample std over seeds of the mean over splits; "
              f"{clips:.0f} test clips per split. Protocol: {any_entries[0]['protocol']}."]
    if experiment.orderings:
        lines += ["", "| Paper's ordering | Δ top-1 (higher − lower) | SE paired by seed | SE over test clips "
                  "| Δ / SE | Held in |", "|---|---|---|---|---|---|"]
        for lower, higher in experiment.orderings:
            o = ordering(results[lower]["runs"], results[higher]["runs"], clips * len(splits))
            lines.append(f"| {results[lower]['title']} < {results[higher]['title']} | {o['delta']:+.1f} | "
                         f"{o['se_seeds']:.1f} | {o['se_clips']:.1f} | {o['z']:+.1f} | "
                         f"{o['held']} of {o['seeds']} seeds |")
        lines.append("")
        lines.append("SE: the two parts in quadrature give Δ / SE. Paired by seed: the std of the per-seed "
                     "differences over √n (rows of one seed share their teacher and SSL start). Over test "
                     "clips: the binomial error of two classifiers at the rows' accuracies, unpaired.")
    if dataset not in PAPER_DATASETS:
        lines.append("The paper's columns are its ARID V1.0 figures, for the ordering only: the embedded data "
                     "and the CPU-sized models are not comparable in level.")
    if walls:
        lines.append(f"Training time of these rows' runs: {sum(walls) / 60:.1f} min in all.")
    return "\n".join(lines)


def chart(path: Path, experiment: Experiment, results: dict, dataset: str) -> None:
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    rows = [r for r in experiment.rows if r != experiment.reference_row]
    means = [seed_means(results[r]["runs"], "test_top1") for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(rows)), 4.0))
    x = np.arange(len(rows))
    ax.bar(x, [m.mean() for m in means], yerr=[m.std(ddof=1) if len(m) > 1 else 0 for m in means],
           capsize=4, color="#4c72b0")
    for xi, m in zip(x, means):
        ax.text(xi, m.mean() + 1, f"{m.mean():.1f}", ha="center", va="bottom", fontsize=8)
    if experiment.reference_row:
        ref = seed_means(results[experiment.reference_row]["runs"], "test_top1").mean()
        ax.axhline(ref, color="red", linestyle="--", label=f"{results[experiment.reference_row]['title']}: {ref:.1f}")
        ax.legend(fontsize=8)
    ax.set_xticks(x, [results[r]["title"] for r in rows], rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"{experiment.title}\n({dataset}; bars: mean over seeds, error bars: sample std)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(out: Path, name: str, experiment: Experiment, runs_dirs: dict, dataset: str) -> str:
    results = collect(experiment, runs_dirs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"experiment": name, "dataset": dataset, "rows": results},
                                                 indent=1))
    text = table(name, experiment, results, dataset)
    (out / "table.md").write_text(text + "\n")
    chart(out / "chart.png", experiment, results, dataset)
    return text


# ------------------------------------------------------------------- CLI


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", help=f"{', '.join(EXPERIMENTS)}, or all")
    parser.add_argument("--rows", default="", help="rows of configs/reproduce.py to train and tabulate "
                        "(comma-separated), as one more experiment named 'rows'")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds: first-seed, first-seed + 1, ...")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--splits", default="", help="official splits (default: every split of a real "
                        "dataset; the embedded data's split 1)")
    parser.add_argument("--arg", default="", help="the config arg of every row: dataset=,root=,size=,ig65m=")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every row (repeatable), e.g. train.epochs=2")
    parser.add_argument("--out", default="bench/results/reproduce")
    parser.add_argument("--no-train", action="store_true",
                        help="write the tables from the finished runs only; a missing run is an error")
    parser.add_argument("--verbose", action="store_true", help="tracebacks and library logs")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    from data_pipelines.bad_input import run_cli  # pylint: disable=g-import-not-at-top

    return run_cli(lambda: _run_or_stop(args), verbose=args.verbose)


def _run_or_stop(args) -> int:
    """A pre-empted or diverged run stops the suite with its one-line reason, as main.py does."""
    from actlumos_jax.train import loop  # pylint: disable=g-import-not-at-top

    try:
        return _run(args)
    except (loop.NonFiniteLossError, loop.Preempted) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 3


def _run(args) -> int:
    from data_pipelines.bad_input import InputError  # pylint: disable=g-import-not-at-top
    from data_pipelines.datasets import VALID_SPLITS  # pylint: disable=g-import-not-at-top
    from configs import base  # pylint: disable=g-import-not-at-top

    names = list(EXPERIMENTS) if args.experiments == ["all"] else list(args.experiments)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise InputError(f"unknown experiment(s) {unknown}; choose from {', '.join(EXPERIMENTS)}, or all")
    experiments = {n: EXPERIMENTS[n] for n in names}
    if args.rows:
        chosen = args.rows.split(",")
        bad_rows = [r for r in chosen if r not in rows_config.ROWS]
        if bad_rows:
            raise InputError(f"--rows: unknown row(s) {bad_rows}; rows: {', '.join(rows_config.ROWS)}")
        experiments["rows"] = Experiment("Chosen rows", tuple(r for r in chosen if rows_config.ROWS[r].stage != "zero_dce"))
    if not experiments:
        raise InputError(f"name an experiment ({', '.join(EXPERIMENTS)}, or all) or --rows")
    if args.seeds < 1:
        raise InputError(f"--seeds {args.seeds}: at least one seed")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    base_arg = ",".join(i for i in args.arg.split(",") if i.partition("=")[0] not in ("ig65m", "row", "runs"))
    a = base.parse_arg(base_arg, **base.ARG_DEFAULTS)
    if args.splits:
        splits = [int(s) for s in args.splits.split(",")]
    else:
        splits = [1] if a.dataset == "synthetic" else list(VALID_SPLITS[a.dataset])
    bad = [s for s in splits if s not in VALID_SPLITS[a.dataset]]
    if bad:
        raise InputError(f"--splits {bad}: {a.dataset} has splits {VALID_SPLITS[a.dataset]}")

    import jax  # pylint: disable=g-import-not-at-top
    from absl import logging  # pylint: disable=g-import-not-at-top

    if not args.verbose:
        logging.set_verbosity(logging.WARNING)
    jax.config.update("jax_compilation_cache_dir",
                      os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/actlumos_jax/xla")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    root = Path(args.out) / f"{a.dataset}-{a.size}"
    runs_dirs = {(split, seed): root / f"split{split}" / f"seed{seed}" for split in splits for seed in seeds}
    for name, experiment in experiments.items():
        print(f"[reproduce] {name}: {experiment.title}", flush=True)
        for (split, seed), runs in runs_dirs.items():
            arg = ",".join(filter(None, [args.arg, f"split={split}"]))
            order: list[str] = []
            for row in (args.rows.split(",") if name == "rows" else experiment.rows):
                order += [r for r in rows_config.depends_on(row) if r not in order]
            for row in order:
                if not args.no_train:
                    train_row(row, runs, seed, arg, args.set)
                elif not (runs / row / "final_metrics.json").is_file():
                    raise InputError(f"--no-train: {runs / row} holds no finished run; run without --no-train")
        print(write_results(root / name, name, experiment, runs_dirs, a.dataset), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
