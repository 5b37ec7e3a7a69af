#!/usr/bin/env bash
# The follow-up runs of issue 19 (after bench/teacher_ablation.sh), into the same results folder:
#   the DFF teacher on 32 frames 1 apart, whose 4 latent time steps let the gate vary within a clip
#   (bench/gate_vs_light.py), against the retinex-only teacher on the same frames; and the DFF
#   teacher with cross-entropy only (is SupCon worth its weight here?); and the DFF and the
#   retinex-only teachers trained twice as long (1152 steps).
#   STEPS="frames32 frames32_retinex supcon0 long" bash bench/teacher_hypotheses.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/teacher_ablation}
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-"frames32 frames32_retinex supcon0 long"}
FRAMES32=(--set data.num_frames=32 --set data.frame_stride=1 --tag "32 frames")
for what in $STEPS; do
  for seed in 0 1 2; do
    case $what in
      frames32) $PY -m bench.teacher_ablation --out "$OUT" --seeds $seed --runs dff_temporal:joint "${FRAMES32[@]}" ;;
      frames32_retinex) $PY -m bench.teacher_ablation --out "$OUT" --seeds $seed --runs retinex_only "${FRAMES32[@]}" ;;
      supcon0) $PY -m bench.teacher_ablation --out "$OUT" --seeds $seed --runs dff_temporal:joint \
                   --set loss.supcon_weight=0 --tag "CE only" ;;
      long) $PY -m bench.teacher_ablation --out "$OUT" --seeds $seed --runs dff_temporal:joint,retinex_only \
                   --set train.epochs=72 --tag "1152 steps" ;;
    esac
  done
done
