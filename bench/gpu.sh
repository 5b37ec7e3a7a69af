#!/usr/bin/env bash
# The GPU benchmark: one run, no network, <= 8 minutes on one H100 or H200, JSON out.
#   bash bench/gpu.sh [--out=FILE] [bench/gpu_bench.py flags]   default FILE: bench/results/gpu_bench.json
#   bash bench/gpu.sh --dry-run [--out=FILE]                    the same code at tiny shapes on CPU (< 1 min)
# What it measures and how: bench/gpu_bench.py's docstring (python -m bench.gpu_bench --help).
#
# What it needs, all already on the machine (nothing is downloaded):
#   * a Python >= 3.11 with jax + a GPU jaxlib (CUDA 12 or 13 plugin) that sees the GPU, numpy,
#     and the pure-Python packages flax, optax, ml_collections, einops, absl-py (and their own
#     pure-Python dependencies, listed below);
#     torch (with CUDA) for the PyTorch half, which is skipped, and said so, when torch does
#     not import. torchvision, opencv, grain, orbax and the datasets are NOT needed.
#   * PYTHON: that interpreter (default: the checkout's .venv/bin/python if it exists, else python3).
#   * WHEELHOUSE (optional): a folder of wheels for what that Python lacks, e.g. made on a
#     machine with network by
#       pip download --no-deps -d wheels flax==0.12.12 optax==0.2.8 ml-collections==1.1.0 \
#           einops==0.8.2 absl-py==2.5.1 msgpack treescope rich markdown-it-py mdurl pygments \
#           typing_extensions PyYAML etils
#     (what `from flax import nnx; import optax` imports beyond jax's own dependencies;
#     flax's orbax/tensorstore requirements are not imported here)
#     and carried along. gpu.sh then installs them, offline and without touching the machine's
#     jax/jaxlib/torch, into a throw-away venv that sees the system packages
#     (python -m venv --system-site-packages; pip install --no-index --no-deps).
# Another jax than the pinned 0.12 (e.g. a preinstalled 0.11 with CUDA 13) is used as it is;
# its version is in the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

DRY=0
for arg in "$@"; do [ "$arg" = "--dry-run" ] && DRY=1; done

if [ -n "${WHEELHOUSE:-}" ]; then
  venv=${TMPDIR:-/tmp}/actlumos-gpu-bench-venv
  if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$venv"
  fi
  # Only wheels of packages the system Python lacks: never a second jax, jaxlib or torch.
  wheels=()
  for whl in "$WHEELHOUSE"/*.whl; do
    [ -e "$whl" ] || continue
    name=$(basename "$whl" | cut -d- -f1 | tr '[:upper:]_' '[:lower:]-')
    case "$name" in jax|jaxlib|jax-cuda*|torch|nvidia-*) continue ;; esac
    if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$name" 2>/dev/null; then
      wheels+=("$whl")
    fi
  done
  if [ ${#wheels[@]} -gt 0 ]; then
    "$venv/bin/python" -m pip install -q --no-index --no-deps "${wheels[@]}"
  fi
  PYTHON=$venv/bin/python
fi

missing=$("$PYTHON" - <<'EOF'
import importlib.util
need = ["numpy", "jax", "flax", "optax", "ml_collections", "einops", "absl"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
)
if [ -n "$missing" ]; then
  echo "error: $PYTHON lacks: $missing (set PYTHON, or WHEELHOUSE to a folder of their wheels; see bench/gpu.sh)" >&2
  exit 2
fi

if [ "$DRY" = 1 ]; then
  # Tiny shapes on the CPU: the same code paths, compiled quickly.
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
fi
# Each part runs in its own process; JAX may take the GPU's memory while it runs.
exec "$PYTHON" -m bench.gpu_bench "$@"
