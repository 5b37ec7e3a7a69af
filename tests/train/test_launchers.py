"""The cluster launchers beyond SLURM: scripts/launch_tpu_vm.sh and k8s/ (+ scripts/k8s_entry.sh).

Each launcher is run as far as this machine allows: two local CPU processes
started with exactly the command or environment the launcher sets up (only the
cluster's own discovery replaced by localhost), training the tiny student for
two steps and checkpointing, as tests/train/test_main.py's two-process test does.
The manifests are parsed and their environment checked against the entry script.

Each two-process run compiles its programs (about a minute of CPU per process).
"""

import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.train.main_runs import ROOT, SMALL, saved_steps

CONFIG = f"{ROOT / 'configs' / 'ssl_student.py'}:preset=tiny"
STEPS = ["--config.train.num_steps=2", "--config.checkpoint.every_steps=2", "--config.checkpoint.async_save=False"]
ENTRY = ROOT / "scripts" / "k8s_entry.sh"
TPU = ROOT / "scripts" / "launch_tpu_vm.sh"


@pytest.fixture(scope="module")
def launcher_env(env):
    # Multi-process runs compile everything (parallel.py turns the persistent cache off), so
    # XLA's CPU backend is asked for quick compiles: the program is the same, its speed not.
    flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    return dict(env, XLA_FLAGS=f"{env['XLA_FLAGS']} {flags}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _failure(out: str, err: str) -> str:
    """A failed process's output: its first error with context, and the tails."""
    lines = err.splitlines()
    first = next((i for i, line in enumerate(lines) if re.search(r"Traceback|Error|error:", line)), None)
    head = "\n".join(lines[max(0, first - 5):first + 40]) if first is not None else ""
    return f"stdout:\n{out[-1500:]}\nfirst error:\n{head}\nstderr tail:\n{err[-3000:]}"


def _check_two_process_run(procs, workdir: Path):
    outputs = [p.communicate(timeout=900) for p in procs]
    for i, (p, (out, err)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"process {i}:\n{_failure(out, err)}"
    assert saved_steps(workdir)[-1] == 2
    # Two processes of two CPU devices each form one 4-device mesh; only process 0 reports.
    assert "4 devices on 2 processes" in outputs[0][0] and "devices on" not in outputs[1][0]
    data_files = sorted(p.name for p in (workdir / "checkpoints" / "2" / "data").iterdir()
                        if p.name.startswith("process_"))
    assert data_files == ["process_0-of-2.json", "process_1-of-2.json"]


# ----------------------------------------------------------------------------- Kubernetes


def _load_yaml(path: Path, parser: str = "yaml") -> list[dict]:
    """The manifest's documents: parsed by PyYAML, or (without it) by `_structural_parse`."""
    try:
        import yaml  # pylint: disable=g-import-not-at-top
    except ImportError:
        parser = "structural"
    if parser == "yaml":
        return [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [_structural_parse(doc) for doc in path.read_text().split("\n---\n")]


def _structural_parse(text: str) -> dict:
    """Without PyYAML: the few fields the wiring checks read, from the manifest's own layout."""
    def one(key):
        found = re.findall(rf"^\s*-?\s*{key}:\s*(.+?)\s*$", text, re.M)
        return found[0].strip('"') if found else None

    name = re.search(r"^metadata:\n\s+name:\s*(\S+)", text, re.M)[1]
    kind = one("kind")
    if kind == "Service":
        return {"kind": kind, "metadata": {"name": name},
                "spec": {"clusterIP": one("clusterIP"), "selector": {"job-name": one("job-name")},
                         "ports": [{"port": int(one("port"))}]}}
    env = dict(re.findall(r"- name: (\w+)\n\s+value: \"?([^\"\n]+)\"?", text))
    container = {"command": shlex.split(one("command").strip("[]").replace(",", " ")),
                 "args": re.findall(r"^\s+- (configs/\S+|/\S+)$", text, re.M),
                 "env": [{"name": k, "value": v} for k, v in env.items()],
                 "ports": [{"containerPort": int(one("containerPort"))}]}
    job = {"completionMode": one("completionMode"), "parallelism": int(one("parallelism") or 0),
           "completions": int(one("completions") or 0),
           "template": {"spec": {"subdomain": one("subdomain"), "containers": [container]}}}
    if kind == "JobSet":
        return {"kind": kind, "metadata": {"name": name},
                "spec": {"network": {"enableDNSHostnames": one("enableDNSHostnames") == "true",
                                     "subdomain": one("subdomain")},
                         "replicatedJobs": [{"name": re.search(r"replicatedJobs:\n\s+- name:\s*(\S+)", text)[1],
                                             "replicas": int(one("replicas")), "template": {"spec": job}}]}}
    return {"kind": kind, "metadata": {"name": name}, "spec": job}


def _entry_required_env() -> set[str]:
    return set(re.findall(r'^: "\$\{(\w+):\?', ENTRY.read_text(), re.M))


def _check_job(job_spec: dict) -> tuple[dict, dict]:
    """The pod's container and env of an Indexed Job spec, checked against scripts/k8s_entry.sh."""
    assert job_spec["completionMode"] == "Indexed"  # Kubernetes sets JOB_COMPLETION_INDEX only then
    [container] = job_spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["NUM_PROCESSES"]) == job_spec["parallelism"] == job_spec["completions"]
    assert container["command"] == ["bash", "scripts/k8s_entry.sh"] and ENTRY.is_file()
    config, _workdir = container["args"][:2]
    assert (ROOT / config.split(":", 1)[0]).is_file()
    assert _entry_required_env() - set(env) == {"JOB_COMPLETION_INDEX"}
    return container, env


def _coordinator(env: dict, container: dict) -> tuple[str, int]:
    host, port = env["COORDINATOR_ADDRESS"].rsplit(":", 1)
    assert int(port) in [p["containerPort"] for p in container["ports"]]
    return host, int(port)


@pytest.mark.parametrize("parser", ["yaml", "structural"])
def test_jobset_env_matches_the_entry_script(parser):
    [jobset] = _load_yaml(ROOT / "k8s" / "jobset.yaml", parser)
    assert jobset["kind"] == "JobSet"
    spec = jobset["spec"]
    assert spec["network"]["enableDNSHostnames"] is True
    subdomain = spec["network"].get("subdomain") or jobset["metadata"]["name"]
    [workers] = spec["replicatedJobs"]
    assert workers["replicas"] == 1  # one Indexed Job: JOB_COMPLETION_INDEX numbers every process
    container, env = _check_job(workers["template"]["spec"])
    host, _ = _coordinator(env, container)
    # JobSet pod DNS: <jobset>-<replicated job>-<job index>-<pod index>.<subdomain>; process 0 is pod 0 of job 0.
    assert host == f"{jobset['metadata']['name']}-{workers['name']}-0-0.{subdomain}"


@pytest.mark.parametrize("parser", ["yaml", "structural"])
def test_indexed_job_env_matches_the_entry_script(parser):
    service, job = _load_yaml(ROOT / "k8s" / "indexed-job.yaml", parser)
    assert (service["kind"], job["kind"]) == ("Service", "Job")
    assert service["spec"]["clusterIP"] == "None" or service["spec"]["clusterIP"] is None
    assert service["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    container, env = _check_job(job["spec"])
    host, port = _coordinator(env, container)
    # An Indexed Job's pod i is <job>-<i>, reachable as <job>-<i>.<headless service>.
    assert host == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert port in [p["port"] for p in service["spec"]["ports"]]


def test_k8s_entry_refuses_an_index_beyond_the_process_count(launcher_env, tmp_path):
    env = dict(launcher_env, COORDINATOR_ADDRESS="127.0.0.1:1", NUM_PROCESSES="2", JOB_COMPLETION_INDEX="2")
    proc = subprocess.run(["bash", str(ENTRY), "configs/teacher.py", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "NUM_PROCESSES" in proc.stderr
    env.pop("JOB_COMPLETION_INDEX")
    proc = subprocess.run(["bash", str(ENTRY), "configs/teacher.py", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Indexed Job" in proc.stderr


def test_k8s_entry_two_pods_train_and_checkpoint(launcher_env, tmp_path):
    """Two pods of k8s/jobset.yaml: its env, with the coordinator's DNS name on localhost."""
    [jobset] = _load_yaml(ROOT / "k8s" / "jobset.yaml")
    [container] = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"]
    manifest_env = {e["name"]: e["value"] for e in container["env"]}
    assert manifest_env["NUM_PROCESSES"] == "2"
    workdir = tmp_path / "k8s"
    pod_env = dict(launcher_env, **manifest_env)
    pod_env.update(PYTHON=sys.executable, COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}",
                   DATA_WORKERS="0")  # this machine's 2 cores: decode in the training process
    procs = [subprocess.Popen(["bash", str(ENTRY), CONFIG, str(workdir), *SMALL, *STEPS],
                              env=dict(pod_env, JOB_COMPLETION_INDEX=str(i)), cwd="/",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    _check_two_process_run(procs, workdir)


# ----------------------------------------------------------------------------- TPU VM pod slices

# jax's own TPU discovery (the TPU VM metadata server) cannot run here; this cluster
# environment, registered with jax the way its GCE/GKE TPU ones are, answers the same
# three questions from the environment, so jax.distributed.initialize() with no
# arguments runs as it does on a pod slice.
FAKE_TPU_CLUSTER = '''
import os
if "ACTLUMOS_TEST_TPU_WORKER_ID" in os.environ:
    from jax._src import clusters

    class LocalPodSlice(clusters.ClusterEnv):
        name = "actlumos_test_pod_slice"
        opt_in_only_method = False

        @classmethod
        def is_env_present(cls):
            return True

        @classmethod
        def get_coordinator_address(cls, timeout_secs, override_coordinator_port):
            return os.environ["ACTLUMOS_TEST_TPU_COORDINATOR"]

        @classmethod
        def get_process_count(cls):
            return int(os.environ["ACTLUMOS_TEST_TPU_WORKERS"])

        @classmethod
        def get_process_id(cls):
            return int(os.environ["ACTLUMOS_TEST_TPU_WORKER_ID"])
'''


def _tpu_print(env, *args) -> list[str]:
    proc = subprocess.run(["bash", str(TPU), "--print", *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_tpu_launcher_prints_gcloud_commands(launcher_env):
    env = dict(launcher_env, TPU_NAME="pod", ZONE="us-east5-a", PROJECT="proj", DATA_WORKERS="16")
    [line] = _tpu_print(env, "configs/teacher.py:dataset=arid10,root=/mnt/a b", "/mnt/runs/it's",
                        "--config.data.resize=(36, 48)")
    words = shlex.split(line)
    assert words[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"]
    assert {"--zone=us-east5-a", "--project=proj", "--worker=all"} <= set(words)
    [remote] = [w.split("=", 1)[1] for w in words if w.startswith("--command=")]
    assert shlex.split(remote) == [
        "cd", "actlumos-jax", "&&", "ACTLUMOS_DISTRIBUTED=auto", ".venv/bin/python", "main.py",
        "--config=configs/teacher.py:dataset=arid10,root=/mnt/a b", "--workdir=/mnt/runs/it's",
        "--config.data.num_workers=16", "--config.data.resize=(36, 48)"]
    setup = _tpu_print(env, "--setup")
    assert setup[0].startswith("git archive") and all("--worker=all" in s for s in setup[1:])
    missing = subprocess.run(["bash", str(TPU), "--print", "a", "b"], env=dict(launcher_env, TPU_NAME="",
                             ZONE="z"), capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "TPU_NAME" in missing.stderr


def test_distributed_auto_rejects_other_values(launcher_env, tmp_path):
    from tests.train.main_runs import main_cmd  # pylint: disable=g-import-not-at-top
    proc = subprocess.run(main_cmd("ssl_student.py", tmp_path / "w", *STEPS), cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(launcher_env, ACTLUMOS_DISTRIBUTED="yes"))
    assert proc.returncode == 2 and "ACTLUMOS_DISTRIBUTED='yes'" in proc.stderr, proc.stderr[-2000:]


def test_tpu_launcher_command_two_workers_train_and_checkpoint(launcher_env, tmp_path):
    """The command launch_tpu_vm.sh runs on each worker, run here on two CPU 'workers'."""
    workdir = tmp_path / "tpu"
    env = dict(launcher_env, TPU_NAME="pod", ZONE="us-east5-a", REMOTE_DIR=str(ROOT), REMOTE_PYTHON=sys.executable)
    [line] = _tpu_print(env, CONFIG, str(workdir), *SMALL, *STEPS)
    [remote] = [w.split("=", 1)[1] for w in shlex.split(line) if w.startswith("--command=")]
    assert "ACTLUMOS_DISTRIBUTED=auto" in remote and "--coordinator_address" not in remote
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(FAKE_TPU_CLUSTER))
    worker_env = dict(launcher_env, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
                      ACTLUMOS_TEST_TPU_COORDINATOR=f"127.0.0.1:{_free_port()}", ACTLUMOS_TEST_TPU_WORKERS="2")
    procs = [subprocess.Popen(["bash", "-c", remote], env=dict(worker_env, ACTLUMOS_TEST_TPU_WORKER_ID=str(i)),
                              cwd=Path.home(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    _check_two_process_run(procs, workdir)
