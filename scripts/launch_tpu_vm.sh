#!/usr/bin/env bash
# Multi-host training on a Cloud TPU VM pod slice: one main.py process per TPU VM worker,
# started on all workers at once with `gcloud compute tpus tpu-vm ssh --worker=all`.
#
#   TPU_NAME=my-v5p-32 ZONE=us-east5-a bash scripts/launch_tpu_vm.sh \
#       configs/teacher.py:dataset=arid10,root=/mnt/shared/ARID,size=paper /mnt/shared/runs/teacher [main.py flags]
#   ... launch_tpu_vm.sh --print ...   prints the exact commands instead of running them (no gcloud needed)
#   ... launch_tpu_vm.sh --setup       copies this checkout (git HEAD) to every worker and installs it there
#
# Each worker runs `ACTLUMOS_DISTRIBUTED=auto python main.py ...`: main.py then calls
# jax.distributed.initialize() with no arguments, and jax reads the worker list and
# this worker's index from the TPU VM metadata (actlumos_jax/train/parallel.py).
#
# Environment:
#   TPU_NAME       the TPU VM (pod slice) name                                   (required)
#   ZONE           its zone                                                      (required)
#   PROJECT        the GCP project                       (default: gcloud's configured project)
#   REMOTE_DIR     the checkout on every worker, relative to the ssh user's home or absolute
#                                                                          (default: actlumos-jax)
#   REMOTE_PYTHON  the Python on the workers, relative to REMOTE_DIR or absolute
#                                                                          (default: .venv/bin/python)
#   DATA_WORKERS   --config.data.num_workers per worker             (default: the config's value)
#   SETUP_PYTHON   the Python >= 3.12 that --setup builds the venv with       (default: python3.12)
#   GCLOUD         the gcloud binary                                           (default: gcloud)
# The workdir and the dataset root must be the same path on every worker, on storage all
# of them see (a Filestore/NFS mount, or a gcsfuse mount of a bucket): orbax writes one
# checkpoint from all processes, and a resubmission with the same workdir resumes from it.
set -euo pipefail

usage="usage: TPU_NAME=NAME ZONE=ZONE bash scripts/launch_tpu_vm.sh [--print] {--setup | CONFIG[:ARG] WORKDIR [main.py flags]}"
PRINT=0
SETUP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --print|--dry-run) PRINT=1; shift ;;
    --setup) SETUP=1; shift ;;
    -h|--help) sed -n '2,27s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
: "${TPU_NAME:?TPU_NAME is not set: the TPU VM name. $usage}"
: "${ZONE:?ZONE is not set: the TPU VM zone. $usage}"
REMOTE_DIR=${REMOTE_DIR:-actlumos-jax}
REMOTE_PYTHON=${REMOTE_PYTHON:-.venv/bin/python}
GCLOUD=${GCLOUD:-gcloud}
cd "$(dirname "$0")/.."

TARGET=(--zone="$ZONE")
[ -n "${PROJECT:-}" ] && TARGET+=(--project="$PROJECT")

# The arguments as POSIX shell words: bare when they hold only safe characters, else in single quotes.
quoted() {
  local out="" a
  for a in "$@"; do
    case "$a" in
      ''|*[!A-Za-z0-9_./:=@%+,-]*) out+="'${a//\'/\'\\\'\'}' " ;;
      *) out+="$a " ;;
    esac
  done
  printf '%s' "${out% }"
}

run() {  # prints (--print) or runs one command
  if [ "$PRINT" = 1 ]; then quoted "$@"; echo; else "$@"; fi
}

if [ "$SETUP" = 1 ]; then
  archive=/tmp/actlumos-jax-$(git rev-parse --short HEAD).tar.gz
  run git archive --format=tar.gz -o "$archive" HEAD
  run "$GCLOUD" compute tpus tpu-vm scp "$archive" "$TPU_NAME":actlumos-jax.tar.gz "${TARGET[@]}" --worker=all
  remote="mkdir -p $(quoted "$REMOTE_DIR") && tar -xzf actlumos-jax.tar.gz -C $(quoted "$REMOTE_DIR")"
  remote+=" && cd $(quoted "$REMOTE_DIR") && $(quoted "${SETUP_PYTHON:-python3.12}") -m venv .venv"
  remote+=" && .venv/bin/python -m pip install -q -e '.[tpu]'"
  run "$GCLOUD" compute tpus tpu-vm ssh "$TPU_NAME" "${TARGET[@]}" --worker=all --command="$remote"
  exit 0
fi

CONFIG=${1:?$usage}
WORKDIR=${2:?$usage}
shift 2
FLAGS=(--config="$CONFIG" --workdir="$WORKDIR")
[ -n "${DATA_WORKERS:-}" ] && FLAGS+=(--config.data.num_workers="$DATA_WORKERS")
remote="cd $(quoted "$REMOTE_DIR") && ACTLUMOS_DISTRIBUTED=auto $(quoted "$REMOTE_PYTHON") main.py $(quoted "${FLAGS[@]}" "$@")"
run "$GCLOUD" compute tpus tpu-vm ssh "$TPU_NAME" "${TARGET[@]}" --worker=all --command="$remote"
