#!/usr/bin/env bash
# Entry point of one pod of k8s/jobset.yaml (or k8s/indexed-job.yaml): turns the Indexed
# Job's environment into main.py's multi-process flags, one process per pod.
#   bash scripts/k8s_entry.sh CONFIG[:ARG] WORKDIR [main.py flags]
# Environment (the manifest sets the first two; Kubernetes sets JOB_COMPLETION_INDEX):
#   COORDINATOR_ADDRESS   host:port of process 0: pod index 0's DNS name and a free port
#   NUM_PROCESSES         the number of pods (= the Job's parallelism = completions)
#   JOB_COMPLETION_INDEX  this pod's index in the Indexed Job: its process id
#   DATA_WORKERS          --config.data.num_workers               (optional; default: the config's)
#   PYTHON                the interpreter (default: .venv/bin/python in the checkout, else python3)
# The workdir must be on a volume every pod mounts (ReadWriteMany): orbax writes one
# checkpoint from all processes, and a restarted Job resumes from it.
set -euo pipefail
usage="usage: bash scripts/k8s_entry.sh CONFIG[:ARG] WORKDIR [main.py flags]"
CONFIG=${1:?$usage}
WORKDIR=${2:?$usage}
shift 2
: "${COORDINATOR_ADDRESS:?COORDINATOR_ADDRESS is not set (host:port of pod index 0; see k8s/jobset.yaml)}"
: "${NUM_PROCESSES:?NUM_PROCESSES is not set (the number of pods; see k8s/jobset.yaml)}"
: "${JOB_COMPLETION_INDEX:?JOB_COMPLETION_INDEX is not set: run this in an Indexed Job (completionMode: Indexed)}"
case "$NUM_PROCESSES$JOB_COMPLETION_INDEX" in *[!0-9]*)
  echo "error: NUM_PROCESSES=$NUM_PROCESSES and JOB_COMPLETION_INDEX=$JOB_COMPLETION_INDEX must be integers" >&2; exit 2 ;;
esac
if [ "$JOB_COMPLETION_INDEX" -ge "$NUM_PROCESSES" ]; then
  echo "error: JOB_COMPLETION_INDEX=$JOB_COMPLETION_INDEX is not below NUM_PROCESSES=$NUM_PROCESSES:" \
       "the manifest's NUM_PROCESSES must equal the Job's parallelism and completions" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
FLAGS=(--config="$CONFIG" --workdir="$WORKDIR" --coordinator_address="$COORDINATOR_ADDRESS"
       --num_processes="$NUM_PROCESSES" --process_id="$JOB_COMPLETION_INDEX")
[ -n "${DATA_WORKERS:-}" ] && FLAGS+=(--config.data.num_workers="$DATA_WORKERS")
exec "$PYTHON" main.py "${FLAGS[@]}" "$@"
