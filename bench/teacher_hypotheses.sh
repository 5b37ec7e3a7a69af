#!/usr/bin/env bash
# The follow-up runs of issue 19 (after bench/teacher_ablation.sh), into the same results folder:
#   the DFF teacher with cross-entropy only (is SupCon worth its weight here?), and the DFF teacher
#   on 32 frames 1 apart, whose 4 latent time steps let the gate vary within a clip (gate_vs_light).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/teacher_ablation}
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-"supcon0 frames32"}
for seed in 0 1 2; do
  for what in $STEPS; do
    case $what in
      supcon0) $PY -m bench.teacher_ablation --out "$OUT" --seeds $seed --runs dff_temporal:joint \
                   --set loss.supcon_weight=0 --tag "CE only" ;;
      frames32) $PY -m bench.teacher_ablation --out "$OUT" --seeds $seed --runs dff_temporal:joint \
                   --set data.num_frames=32 --set data.frame_stride=1 --tag "32 frames" ;;
    esac
  done
done
