"""ActLumos in JAX: ``python main.py --config=configs/kd_student.py [--workdir=DIR]``.

configs/kd_student.py runs the whole recipe (teacher, SSL student, KD student)
and prints a Table-5-style summary; configs/teacher.py and
configs/ssl_student.py run their stage alone. Multi-host: start one process
per host; under SLURM it is detected, elsewhere pass --coordinator_address,
--num_processes and --process_id.

A mistake in the command line, the config or the data prints one ``error: ...``
message naming the flag, field or file, with no traceback, and exits 2;
``--verbose`` shows the traceback.
"""

import difflib
import gc
import os
import re
import sys
from pathlib import Path

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from configs import base
from data_pipelines.bad_input import INPUT_ERROR_EXIT_CODE, InputError

DEFAULT_CONFIG = "configs/kd_student.py"
if __name__ == "__main__" and not any(re.match(r"--?(config(=|$)|flagfile)", a) for a in sys.argv[1:]):
    # Named on the command line, the default config is loaded with the other flags, behind
    # parse_flags' error boundary; as a default, ml_collections would load it (and apply the
    # --config. overrides, an unknown key included) while the flag is defined, here.
    sys.argv.insert(1, f"--config={DEFAULT_CONFIG}")
_CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Stage config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "", "Where checkpoints and metrics go (default: workdirs/<dataset>-<size>).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index in a multi-process run.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Keep library INFO logs (orbax, grain) on the console, and show the "
                                                "traceback of an error.")


def main(argv):
    if len(argv) > 1:
        hint = next((f"; did you mean --config={a}?" for a in argv[1:] if a.endswith(".py") or ".py:" in a), "")
        _usage_error(f"unexpected arguments {argv[1:]}: flags are written --name=value "
                     f"(python main.py --helpshort lists them){hint}")
    from data_pipelines.bad_input import run_cli  # pylint: disable=g-import-not-at-top

    code = run_cli(_run, verbose=_VERBOSE.value)
    # loop.train and loop.evaluate close their data iterators (and grain's workers) when an error stops
    # them. What the error's traceback kept alive (the failed run's frames, and through them the batches
    # grain's workers handed over in shared memory) is reference cycles: collected here, while grain's
    # unlinking thread still runs, the shared memory is freed; left to interpreter exit, Python's
    # resource tracker prints "leaked shared_memory objects" warnings after the error message.
    gc.collect()
    sys.exit(code)


# ----------------------------------------------------------------------------- the command line's errors


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing behind the project's error boundary.

    A mistake on the command line (an unknown flag, a typo in the config arg,
    a config file that is not there, an unknown ``--config.`` key, a value of
    the wrong type) prints one ``error: ...`` line naming the flag and what to
    do, and exits 2, before anything is built. ``--verbose`` shows the
    traceback instead. Anything else keeps its traceback: it is a bug.
    """
    try:
        rest = flags.FLAGS(argv)
        _check_config(argv)
        return rest
    except Exception as e:  # pylint: disable=broad-except  # sorted below: a user's mistake or a bug
        if _verbose_requested(argv):
            raise
        message = _flag_error_message(e, argv)
        if message is None:
            raise
        _usage_error(message)


def _usage_error(message: str):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(INPUT_ERROR_EXIT_CODE)


def _verbose_requested(argv: list[str]) -> bool:
    verbose = False
    for arg in _flag_args(argv):
        name, _, value = arg.lstrip("-").partition("=")
        if name == "verbose":
            verbose = value.lower() not in ("false", "f", "0") if value else True
        elif name == "noverbose":
            verbose = False
    return verbose


def _flag_args(argv: list[str]) -> list[str]:
    args = list(argv[1:])
    return args[:args.index("--")] if "--" in args else args


def _config_arg(argv: list[str]) -> str:
    """The value of --config on this command line (the last one), or the default."""
    value, args = DEFAULT_CONFIG, _flag_args(argv)
    for i, arg in enumerate(args):
        if re.fullmatch(r"--?config=.*", arg):
            value = arg.split("=", 1)[1]
        elif re.fullmatch(r"--?config", arg) and i + 1 < len(args):
            value = args[i + 1]
    return value


def _overrides(argv: list[str]) -> dict[str, str | None]:
    """``--config.a.b=v`` of this command line: {"a.b": "v"} (None: no ``=v``), in order, the last one kept."""
    found = {}
    for arg in _flag_args(argv):
        match = re.match(r"--?(?:no)?config\.([^=]+)(?:=(.*))?$", arg, re.S)
        if match:
            found.pop(match[1], None)
            found[match[1]] = match[2]
    return found


def _load_config(config_arg: str) -> ml_collections.ConfigDict | None:
    """The config that --config names, loaded afresh (to name what an override got wrong); None if it fails."""
    try:
        config = flags.FLAGS["config"].parser.parse(config_arg)
    except Exception:  # pylint: disable=broad-except  # reported from the flag's own error
        return None
    return config if isinstance(config, ml_collections.ConfigDict) else None


def _known_configs() -> str:
    return ", ".join(os.path.relpath(p) for p in sorted((Path(__file__).parent / "configs").glob("*.py"))
                     if p.name != "__init__.py")


def _config_file_problem(config_arg: str, error: BaseException | None = None) -> str:
    path, known = config_arg.split(":", 1)[0], _known_configs()
    if not path:
        return f"--config={config_arg}: no config file named; the configs are {known}"
    if not Path(path).is_file():
        return (f"--config={config_arg}: no config file {path!r} (relative to {os.getcwd()}); "
                f"the configs are {known}")
    reason = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    return f"--config={config_arg}: the config file {path!r} cannot be loaded" + (f" ({reason[-1]})" if reason else "")


def _lookup(config: ml_collections.ConfigDict, path: str):
    """(the ConfigDict holding the field, its name), or an error message naming the first key that is not there."""
    node, walked, parts = config, "config", path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict):
            return f"{walked} is {type(node).__name__} {node!r}, which has no field {part!r}"
        if part not in node:
            keys = sorted(node.keys())
            close = difflib.get_close_matches(part, keys, n=1, cutoff=0.6)
            hint = f"did you mean --{walked}.{close[0]}? " if close else ""
            return f"{walked} has no key {part!r}; {hint}its keys: {', '.join(keys)}"
        if i == len(parts) - 1:
            return node, part
        node, walked = node[part], f"{walked}.{part}"
    return "empty key"


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (tuple, list)):
        return "a tuple of numbers" if value and all(_is_number(v) for v in value) else "a tuple"
    return f"a {type(value).__name__}"


def _wrong_type(path: str, given: str | None, current) -> str:
    if isinstance(current, ml_collections.ConfigDict):
        return (f"--config.{path}{'=' + given if given is not None else ''}: config.{path} is a group of settings, "
                f"not one value; set its keys with --config.{path}.KEY=VALUE: {', '.join(sorted(current.keys()))}")
    if given is None:  # absl took the next argument as its value
        return (f"--config.{path} needs a value: write --config.{path}=VALUE, {_kind(current)} "
                f"(the config has {current!r})")
    return (f"--config.{path}={given}: config.{path} takes {_kind(current)} (the config has {current!r}), "
            f"not {given!r}")


def _flag_error_message(e: BaseException, argv: list[str]) -> str | None:
    """One line for a mistake on the command line; None for anything else (a bug: its traceback shows)."""
    config_arg, overrides = _config_arg(argv), _overrides(argv)
    if isinstance(e, InputError):
        return str(e)
    chain, cause = [], e
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    # The config arg (``configs/teacher.py:datset=x``): configs/base.py's InputError, without ml_collections' trace.
    inner = [c for c in chain if isinstance(c, InputError) and not str(c).startswith("Error whilst parsing")]
    if inner and isinstance(e, flags.Error) and str(e).startswith("flag --config="):
        return f"--config={config_arg}: {inner[-1]}"
    not_loaded = [c for c in chain if isinstance(c, OSError) and "earlier failure to load" in str(c)]
    if not_loaded:
        return _config_file_problem(config_arg, not_loaded[0])
    if isinstance(e, AttributeError) and "has no attribute 'get_config'" in str(e):
        return (f"--config={config_arg}: {config_arg.split(':', 1)[0]!r} is not a config file: it defines no "
                f"get_config(); the configs are {_known_configs()}")
    config = _load_config(config_arg)
    for path, given in overrides.items() if config is not None else ():
        found = _lookup(config, path)
        # An unknown --config. key: ml_collections raises a raw AttributeError or KeyError.
        if isinstance(found, str) and isinstance(e, (AttributeError, KeyError)):
            return f"--config.{path}{'=' + given if given is not None else ''}: {found}"
        # A value of the wrong type: absl's "flag --config.a.b=v: invalid literal for int() ...".
        if not isinstance(found, str) and isinstance(e, flags.Error) and str(e).startswith(f"flag --config.{path}="):
            holder, name = found
            return _wrong_type(path, given, holder[name])
    if isinstance(e, config_flags.config_flags.FlagOrderError) and "before a value for --config" in str(e):
        return f"{e}: put --config=FILE before its --config. overrides"
    if isinstance(e, flags.UnrecognizedFlagError):
        return f"{e} (python main.py --helpshort lists the flags)"
    if isinstance(e, flags.Error):
        return str(e)
    return None


def _check_config(argv: list[str]) -> None:
    """What parsing lets through: a config file that did not load, a tuple override of the wrong element type."""
    config_arg = _config_arg(argv)
    if not isinstance(_CONFIG.value, ml_collections.ConfigDict):
        raise InputError(_config_file_problem(config_arg, getattr(_CONFIG.value, "_error", None)))
    fresh = _load_config(config_arg)
    if fresh is None:
        return
    for path, given in _overrides(argv).items():
        was, now = _lookup(fresh, path), _lookup(_CONFIG.value, path)
        if isinstance(was, str) or isinstance(now, str):
            continue
        before, after = was[0][was[1]], now[0][now[1]]
        if isinstance(before, (tuple, list)) and before and all(_is_number(v) for v in before):
            if not isinstance(after, (tuple, list)) or not all(_is_number(v) for v in after):
                raise InputError(_wrong_type(path, given, before))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    app.run(main, flags_parser=parse_flags)
