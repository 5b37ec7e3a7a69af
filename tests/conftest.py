import os
import shutil
import tempfile

from tests.compile_flags import xla_flags

# Eight fake CPU devices for the SPMD tests; must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", xla_flags(8))  # and fast compiles (tests/compile_flags.py)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent XLA cache for the whole run: the xdist workers and every main.py the tests start
# inherit it, so a program (a tiny model's initializer, train step or eval step) compiles once per
# run instead of once per process. Every compile is kept, however small (most take 0.1-3 s here).
# Multi-process runs switch it off themselves (actlumos_jax/train/parallel.py).
if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller (or a plain run): workers inherit its environment
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="actlumos-tests-xla-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["ACTLUMOS_TESTS_OWN_XLA_CACHE"] = "1"


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and os.environ.pop("ACTLUMOS_TESTS_OWN_XLA_CACHE", None):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
