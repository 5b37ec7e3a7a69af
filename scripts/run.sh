#!/usr/bin/env bash
# One entry for both README set-up commands:
#   bash scripts/run.sh main [main.py flags]   the main job on the embedded dataset
#   bash scripts/run.sh test [pytest args]     the test suite
# Either creates .venv in the checkout when it is missing (or when setup.py
# changed since it was installed) with a Python >= 3.12 found on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"

find_python() {
  local cand
  for cand in "${PYTHON:-}" python3.13 python3.12 python3 \
      "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && \
        "$cand" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      command -v "$cand"; return 0
    fi
  done
  echo "error: no Python >= 3.12 found (jax/flax 0.12 need it). Set PYTHON=/path/to/python3.12." >&2
  return 1
}

ensure_venv() {  # $1: the pip extras ("" or "[test]")
  local extras="$1" stamp want
  want="$(sha256sum setup.py | cut -c1-16)$extras"
  stamp="$VENV/.actlumos-installed"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && grep -qxF "$want" "$stamp"; then
    return 0
  fi
  # A test install covers the main job too.
  if [ -z "$extras" ] && [ -f "$stamp" ] && grep -qxF "$(sha256sum setup.py | cut -c1-16)[test]" "$stamp"; then
    return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    local py; py=$(find_python)
    echo "creating $VENV with $py ($("$py" --version))" >&2
    "$py" -m venv "$VENV"
  fi
  echo "installing actlumos-jax$extras and its pinned dependencies into $VENV" >&2
  local log="$VENV/pip-install.log"
  if ! { "$VENV/bin/python" -m pip install --upgrade pip setuptools wheel &&
         "$VENV/bin/python" -m pip install -e ".$extras"; } > "$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "error: pip install failed; full log in $log" >&2
    return 1
  fi
  echo "$want" >> "$stamp"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  main)
    ensure_venv ""
    exec "$VENV/bin/python" main.py --config=configs/kd_student.py "$@"
    ;;
  test)
    ensure_venv "[test]"
    exec "$VENV/bin/python" -m pytest -q --numprocesses="${ACTLUMOS_TEST_WORKERS:-2}" --dist=loadfile tests "$@"
    ;;
  *)
    echo "usage: bash scripts/run.sh {main|test} [args...]" >&2; exit 2
    ;;
esac
