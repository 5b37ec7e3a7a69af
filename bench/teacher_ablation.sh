#!/usr/bin/env bash
# Every teacher figure of the README and of issue 19's closing note, seed-major so partial output is usable.
#   bash bench/teacher_ablation.sh [OUT]   (from the repository root; ~65 min on a 2-core CPU)
# All runs train the demo's teacher schedule (576 steps) with CE + 0.1 SupCon on class-balanced batches:
#   the three BatchNorm forms of the DFF teacher, and Table 6's fusion ablation under the same loss.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/teacher_ablation}
PY=${PYTHON:-.venv/bin/python}
for seed in 0 1 2; do
  $PY -m bench.teacher_ablation --out "$OUT" --seeds $seed \
      --runs dff_temporal:joint,dff_temporal:separate,retinex_only,dark_only,concat:joint,dff_temporal:per_stream
done
