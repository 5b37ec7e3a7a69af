"""SPMD across devices and hosts: process start-up, the mesh, and sharding rules.

One program runs on one CPU, eight GPUs or many hosts. The batch is split on
the ``data`` mesh axis; parameters are replicated unless a rule shards them.
BatchNorm statistics are global: under jit, the mean over a ``data``-sharded
batch is an all-reduce that XLA inserts, i.e. synchronised BatchNorm over the
whole global batch (the reference's per-GPU statistics differ from this when
its per-GPU batch is small).
"""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from actlumos_jax.checkpoint_compat import path_name
from data_pipelines.bad_input import InputError

DATA_AXIS = "data"
# ACTLUMOS_DISTRIBUTED=auto: a launcher (scripts/launch_tpu_vm.sh) leaves finding the
# cluster to jax.distributed.initialize() with no arguments, e.g. on Cloud TPU VM pod
# slices, where jax reads the workers and this worker's index from the TPU metadata.
AUTO_ENV = "ACTLUMOS_DISTRIBUTED"


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1) -> None:
    """Starts jax.distributed when this is one process of several.

    Explicit arguments win; then ``ACTLUMOS_DISTRIBUTED=auto`` (jax finds the
    cluster itself: TPU VM pod slices); then a SLURM job step with more than one
    task is detected (jax reads SLURM_* itself); otherwise single-process.
    """
    if jax.distributed.is_initialized():
        return
    auto = os.environ.get(AUTO_ENV, "")
    if auto not in ("", "auto"):
        raise InputError(f"{AUTO_ENV}={auto!r}: the only value is 'auto' (jax.distributed.initialize() finds the "
                         "cluster); unset it to run single-process or under SLURM")
    if coordinator_address:
        if num_processes < 1 or process_id < 0:
            raise ValueError("with a coordinator address, num_processes and process_id must be given too")
        # Cross-process collectives for the CPU backend (tests, CPU clusters); GPUs
        # and TPUs ignore it. Asking for the backend here would initialise it too early.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif auto:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize()
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in os.environ:
        jax.distributed.initialize()
    else:
        return
    # jax writes the persistent compilation cache from process 0 only: on a warm cache process 0
    # skips compiling what the others still compile (their programs on their own devices are never
    # written), and the first collective waits for them (on CPU, gloo gives up after 30 s). The
    # slowest process sets the pace either way, so a multi-process run loses nothing without it.
    jax.config.update("jax_enable_compilation_cache", False)
    # Open the cross-process collectives now, while all processes are in step:
    # a context first opened later (e.g. by orbax) times out after 30 s if one
    # process is still compiling.
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("actlumos:start")
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())


def make_mesh(num_devices: int = -1) -> Mesh:
    """A 1-D ``data`` mesh over ``num_devices`` devices (-1: all of them)."""
    n = jax.device_count() if num_devices in (-1, 0, None) else int(num_devices)
    if n > jax.device_count():
        raise ValueError(f"mesh asks for {n} devices but only {jax.device_count()} exist")
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=jax.devices()[:n])


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def sharding_from_rules(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, str]]) -> Any:
    """Shardings for every leaf of ``tree`` from (regex, spec) rules, first match wins.

    A spec is ``"replicated"`` or ``"fsdp"``: shard the largest dimension
    divisible by the data-axis size over ``data`` (ZeRO-3 style, for models too
    big to replicate); leaves no rule matches are replicated. Paths are the
    "/"-joined pytree keys, e.g. ``opt_state/0/mu/backbone/layers/3/0/conv1/spatial/kernel``.
    """
    compiled = [(re.compile(pattern), spec) for pattern, spec in rules]
    data_size = mesh.shape[DATA_AXIS]

    def leaf_sharding(path, leaf):
        name = path_name(path)
        for pattern, spec in compiled:
            if pattern.search(name):
                if spec == "replicated":
                    return NamedSharding(mesh, P())
                if spec == "fsdp":
                    shape = np.shape(leaf)
                    dims = [d for d in np.argsort(shape)[::-1] if shape[d] % data_size == 0 and shape[d] >= data_size]
                    if not dims:
                        return NamedSharding(mesh, P())
                    axes = [None] * len(shape)
                    axes[dims[0]] = DATA_AXIS
                    return NamedSharding(mesh, P(*axes))
                raise ValueError(f"sharding rule {pattern.pattern!r}: unknown spec {spec!r} (replicated|fsdp)")
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(leaf_sharding, tree)



def place(tree: Any, shardings: Any) -> Any:
    """Puts a host-side pytree (identical on every process) onto global shardings.

    ``jax.device_put`` only reaches this process's devices; with several
    processes each one builds its own shards from its full host copy.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def one(x, sharding):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: one(x, shardings), tree)
    return jax.tree.map(one, tree, shardings)
