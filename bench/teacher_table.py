"""The teacher table: mean +- std over seeds, and each difference against the reference with its standard error.

Reads the runs of ``bench/teacher_ablation.py`` (OUT/runs.jsonl), re-scores every
run's final checkpoint on the test clips one by one (cached in OUT/per_clip.json)
and writes OUT/table.md and OUT/table.png (``--name`` for others, ``--rows`` to choose the rows).

A difference d between the reference R and a row A (means over seeds of test
top-1) has two sources of error, added in quadrature:
  seeds  training noise: sqrt(s_R^2 / n_R + s_A^2 / n_A), s the std over seeds;
  clips  the finite test split: the std over test clips of the per-clip
         difference in accuracy (each clip's correct fraction over seeds, R minus
         A), over sqrt(number of clips). Paired: both rows see the same clips.
The last column gives d over the combined error: issue 19 counts a row as beaten
above 1; above 2 is the stricter two-sided 95 % reading.

  python -m bench.teacher_table --out bench/results/teacher_ablation --reference dff_temporal:joint
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def per_clip_correct(row: dict) -> list[int]:
    from actlumos_jax.train import input_pipeline, warm_start  # pylint: disable=g-import-not-at-top
    from bench.teacher_ablation import clips_of, make_forward, predict, run_config  # pylint: disable=g-import-not-at-top

    config = run_config(row["fusion"], row["stream_norm"], row["seed"], row["overrides"])
    data = input_pipeline.read_stage_data(config)
    graphdef, variables, _ = warm_start.load_teacher(row["workdir"], data.info.num_classes)  # the checkpoint its stage chose
    videos, labels = clips_of(config, data, "test")
    logits, _ = predict(make_forward(graphdef, config, False), variables, videos, np.arange(len(videos)), 32)
    correct = (logits.argmax(-1) == labels).astype(int).tolist()
    if abs(100 * np.mean(correct) - row["test_top1"]) > 1e-6:
        raise RuntimeError(f"{row['workdir']}: re-scored {100 * np.mean(correct):.2f} %, the run saved "
                           f"{row['test_top1']:.2f} %")
    return correct


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/results/teacher_ablation")
    parser.add_argument("--reference", default="dff_temporal:joint")
    parser.add_argument("--rows", default="", help="comma-separated run names to tabulate (default: those without a tag)")
    parser.add_argument("--name", default="table", help="stem of the .md and .png written")
    args = parser.parse_args()
    out = Path(args.out)
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    cache_path = out / "per_clip.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for row in rows:
        key = row["fingerprint"]
        if key not in cache:
            cache[key] = per_clip_correct(row)
            cache_path.write_text(json.dumps(cache))
    wanted = [n for n in args.rows.split(",") if n] or [r["name"] for r in rows if " " not in r["name"]]
    groups: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: wanted.index(r["name"]) if r["name"] in wanted else -1):
        if row["name"] in wanted:
            groups.setdefault(row["name"], []).append(row)
    if args.reference not in groups:
        raise SystemExit(f"error: no runs named {args.reference!r}; have {sorted(groups)}")

    def stats(name):
        rs = groups[name]
        top1 = np.array([r["test_top1"] for r in rs])
        per_clip = np.mean([cache[r["fingerprint"]] for r in rs], axis=0)  # each clip's correct fraction
        return top1, per_clip

    ref_top1, ref_clips = stats(args.reference)
    lines = [f"| teacher (CE + 0.1 SupCon unless named) | seeds | test top-1 | train top-1, eval mode | "
             f"train top-1, batch stats | Δ vs {args.reference} | SE seeds | SE clips | Δ / SE |",
             "|---|---|---|---|---|---|---|---|---|"]
    chart = []
    for name, rs in groups.items():
        top1, clips = stats(name)
        sd = top1.std(ddof=1) if len(top1) > 1 else float("nan")
        cells = [f"{np.mean([r[k] for r in rs]):.1f} ± {np.std([r[k] for r in rs], ddof=1) if len(rs) > 1 else 0:.1f}"
                 for k in ("train_top1_eval", "train_top1_batchstats")]
        if name == args.reference:
            diff_cells = ["", "", "", ""]
        else:
            d = ref_top1.mean() - top1.mean()
            se_seed = np.sqrt(ref_top1.var(ddof=1) / len(ref_top1) + top1.var(ddof=1) / len(top1))
            se_clip = 100 * np.std(ref_clips - clips, ddof=1) / np.sqrt(len(clips))
            se = np.hypot(se_seed, se_clip)
            diff_cells = [f"{d:+.1f}", f"{se_seed:.1f}", f"{se_clip:.1f}",
                          f"{d / se:+.1f}"]
        lines.append(f"| {name} | {len(rs)} | {top1.mean():.1f} ± {sd:.1f} | " + " | ".join(cells + diff_cells) + " |")
        chart.append((name, top1))
    clips_n = len(ref_clips)
    lines += ["", f"Mean ± sample std (ddof 1) over seeds; {clips_n} test clips of split 1, chance "
              f"{100 / 11:.1f} %; every run is 576 steps and is scored at its final step."]
    table = "\n".join(lines)
    (out / f"{args.name}.md").write_text(table + "\n")
    print(table)
    _chart(chart, out / f"{args.name}.png")


def _chart(chart, path: Path) -> None:
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    fig, ax = plt.subplots(figsize=(1.6 * len(chart) + 2, 4))
    names = [n for n, _ in chart]
    means = [v.mean() for _, v in chart]
    stds = [v.std(ddof=1) if len(v) > 1 else 0 for _, v in chart]
    ax.bar(range(len(chart)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
    for i, (_, v) in enumerate(chart):
        ax.plot([i] * len(v), v, "k.", ms=5)
    ax.axhline(100 / 11, color="0.5", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(chart)), [n.replace(":", "\n") for n in names], fontsize=8)
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Teacher ablations on the embedded data (mean ± std over seeds; dots: seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
