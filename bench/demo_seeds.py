"""The README's main command over several seeds: its wall time, and its Table 5 as mean +- std.

Runs ``python main.py --config=configs/kd_student.py`` once per seed (every stage
of the pipeline gets that seed) in OUT/seed<N>, timing each, then reads each
stage's final_metrics.json. A finished seed is not rerun.

  python -m bench.demo_seeds --seeds 0,1,2 --out bench/results/demo_seeds

Standard errors of a difference between two rows: over seeds,
sqrt(s_a^2 / n + s_b^2 / n); over test clips, the binomial error of two
independent classifiers at the rows' accuracies, sqrt(p_a q_a / N + p_b q_b / N),
which overstates the error of a paired comparison on the same clips; and paired
by seed (both students of one seed share its teacher and SSL start), the std of
the per-seed differences over sqrt(n).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("teacher", "ssl_only_student", "kd_only_student", "kd_student")


def run_seed(seed: int, out: Path, extra: list[str]) -> float | None:
    workdir = out / f"seed{seed}"
    if (workdir / "kd_student" / "final_metrics.json").is_file():
        return None
    cmd = [sys.executable, str(ROOT / "main.py"), f"--config={ROOT / 'configs' / 'kd_student.py'}",
           f"--workdir={workdir}", f"--config.seed={seed}", f"--config.prerequisites.teacher.seed={seed}",
           f"--config.prerequisites.ssl.seed={seed}", *extra]
    start = time.time()
    with open(out / f"seed{seed}.log", "w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    seconds = time.time() - start
    (workdir / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="bench/results/demo_seeds_val")
    parser.add_argument("extra", nargs="*", help="more main.py flags, after --")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        seconds = run_seed(seed, out, args.extra)
        print(f"seed {seed}: " + (f"{seconds:.0f} s" if seconds is not None else "done before"), flush=True)
    results = {name: [json.loads((out / f"seed{s}" / name / "final_metrics.json").read_text()) for s in seeds]
               for name in STAGES if (out / f"seed{seeds[0]}" / name / "final_metrics.json").is_file()}
    walls = [float((out / f"seed{s}" / "wall_seconds.txt").read_text()) for s in seeds
             if (out / f"seed{s}" / "wall_seconds.txt").is_file()]
    clips = results["teacher"][0]["metrics"]["test_clips"]
    lines = [f"| Model | Params (M) | Top-1 | Top-5 |", "|---|---|---|---|"]
    top1 = {}
    for name, rs in results.items():
        title = rs[0]["title"]
        t1 = np.array([r["metrics"]["test_top1"] for r in rs])
        t5 = np.array([r["metrics"]["test_top5"] for r in rs])
        top1[name] = t1
        lines.append(f"| {title} | {rs[0]['parameters'] / 1e6:.2f} | {t1.mean():.1f} ± {t1.std(ddof=1):.1f} | "
                     f"{t5.mean():.1f} ± {t5.std(ddof=1):.1f} |")
    lines += ["", f"{len(seeds)} seeds ({args.seeds}), mean ± sample std; {clips:.0f} test clips of split 1, "
              f"chance {100 / 11:.1f} %. Protocol: {results['teacher'][0].get('protocol', 'unrecorded')}. "
              f"Per seed ({' / '.join(results)}): "
              + "; ".join(" / ".join(f"{v:.1f}" for v in row) for row in zip(*top1.values())) + "."]
    for other in ("ssl_only_student", "kd_only_student"):
        if other not in top1:
            continue
        a, b = top1["kd_student"], top1[other]
        se_seed = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        pa, pb = a.mean() / 100, b.mean() / 100
        se_clip = 100 * np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / clips)
        se_paired = (a - b).std(ddof=1) / np.sqrt(len(a))
        lines.append(f"SSL+KD minus {other}: {a.mean() - b.mean():+.1f} points (per seed "
                     f"{', '.join(f'{d:+.1f}' for d in a - b)}); SE over seeds {se_seed:.1f}, paired by seed "
                     f"{se_paired:.1f}, over test clips (unpaired bound) {se_clip:.1f}.")
    if walls:
        lines.append(f"Wall time per run: {', '.join(f'{w / 60:.1f}' for w in walls)} min.")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
