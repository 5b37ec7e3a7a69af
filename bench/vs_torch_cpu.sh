#!/usr/bin/env bash
# The JAX-against-PyTorch figures of the README, into bench/results/vs_torch_cpu.txt:
#   bash bench/vs_torch_cpu.sh [BASELINE_REV]
# the student's forward and training step, the teacher's two-stream shape, each
# convolution apart, the step summed by XLA operation kind; with BASELINE_REV,
# also the student at that revision (from a temporary git worktree), so a
# change's effect is read against torch on the same machine in the same hour.
# Run it on an otherwise idle machine: every figure is a JAX / torch ratio per
# round, but background load still hits the two frameworks unevenly.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v "${PYTHON:-python}")
python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"  # absolute: the baseline runs elsewhere
out=bench/results/vs_torch_cpu.txt
trace=$(mktemp -d)
code="$(git rev-parse --short HEAD)$(git diff --quiet -- . ":!$out" || echo ' + uncommitted changes')"
{
  echo "# bash bench/vs_torch_cpu.sh ${1:-}: $(date -u +%F), model code as of $code; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo; echo "## student: python -m bench.vs_torch --repeats 5"
  "$python" -m bench.vs_torch --repeats 5
  echo; echo "## teacher's two-stream shape: python -m bench.vs_torch --teacher --repeats 3"
  "$python" -m bench.vs_torch --teacher --repeats 3
  echo; echo "## each convolution of the student: python -m bench.vs_torch --layers --repeats 3"
  "$python" -m bench.vs_torch --layers --repeats 3
  echo; echo "## the student's training step by XLA operation kind: python -m bench.vs_torch --profile DIR"
  "$python" -m bench.vs_torch --profile "$trace" | sed "s|$trace|DIR|"
  if [[ -n "${1:-}" ]]; then
    base=$(mktemp -d)
    git worktree add -q --detach "$base" "$1"
    echo; echo "## student at $1 (the baseline): python -m bench.vs_torch --repeats 5"
    (cd "$base" && "$python" -m bench.vs_torch --repeats 5)
    git worktree remove --force "$base"
  fi
  echo; echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2> >(grep -v -i warning >&2) | tee "$out"
rm -rf "$trace"
