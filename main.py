"""ActLumos in JAX: ``python main.py --config=configs/kd_student.py [--workdir=DIR]``.

configs/kd_student.py runs the whole recipe (teacher, SSL student, KD student)
and prints a Table-5-style summary; configs/teacher.py and
configs/ssl_student.py run their stage alone. Multi-host: start one process
per host; under SLURM it is detected, elsewhere pass --coordinator_address,
--num_processes and --process_id.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from configs import base

_CONFIG = config_flags.DEFINE_config_file("config", "configs/kd_student.py", "Stage config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Where checkpoints and metrics go (default: workdirs/<dataset>-<size>).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index in a multi-process run.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Keep library INFO logs (orbax, grain) on the console.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from data_pipelines.bad_input import run_cli  # pylint: disable=g-import-not-at-top

    sys.exit(run_cli(_run, verbose=_VERBOSE.value))


def _run() -> int:
    # Imported after flag parsing so --help stays fast.
    import jax

    if logging.get_verbosity() <= logging.INFO and not _VERBOSE.value:
        logging.set_verbosity(logging.WARNING)  # orbax and grain log every save at INFO
    # Compiled steps are cached across runs and stages of the same shapes.
    jax.config.update("jax_compilation_cache_dir",
                      os.environ.get("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/actlumos_jax/xla")))
    # Every compile, however small: a run's eager set-up ops cost ~0.5 s each to compile on a small CPU.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    from actlumos_jax.train import loop, parallel, pipeline
    from actlumos_jax.train.stages import make_stage

    config = _CONFIG.value
    base.validate(config)
    if "prerequisites" in config:
        base.validate_pipeline(config)
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    workdir = _WORKDIR.value or f"workdirs/{config.dataset.name}-{config.size}"
    _warn_if_paper_size_from_scratch(config)
    if jax.process_index() == 0:
        print(f"{jax.device_count()} devices on {jax.process_count()} processes; workdir {workdir}", flush=True)

    try:
        if config.stage == "kd" and "prerequisites" in config:
            results = pipeline.run_kd_pipeline(config, workdir)
            if jax.process_index() == 0:
                protocol = loop.protocol(config, make_stage(config))
                print(pipeline.summary_table(results, config.dataset.name, protocol), flush=True)
        else:
            result = loop.run_stage(config, workdir)
            if jax.process_index() == 0:
                print(f"{result.stage}: {result.metrics}", flush=True)
    except (loop.NonFiniteLossError, loop.Preempted) as e:
        if _VERBOSE.value:
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 3
    return 0


def _warn_if_paper_size_from_scratch(config) -> None:
    stages = [config, *(config.get("prerequisites") or {}).values()]
    if config.size != "paper" or any(s.init.backbone_checkpoint for s in stages):
        return
    message = ("size=paper without IG-65M weights: the backbone trains FROM SCRATCH, which the paper's "
               "recipe (AdamW 1e-5, 50 epochs) is not made for. Convert the weights with actlumos-convert and "
               "pass --config.init.backbone_checkpoint=DIR (for the KD pipeline: "
               "--config.prerequisites.teacher.init.backbone_checkpoint=DIR).")
    logging.warning(message)
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    app.run(main)
