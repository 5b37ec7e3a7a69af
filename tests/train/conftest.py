"""The environment of main.py subprocesses: one dataset per test module; the persistent XLA cache is
the run's (tests/conftest.py), so only the first run of each program shape pays for compilation."""

import os

import pytest

from tests.compile_flags import xla_flags


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    shared = tmp_path_factory.mktemp("shared")
    env = dict(os.environ, ACTLUMOS_DATA_DIR=str(shared / "data"),
               JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(2), PYTHONUNBUFFERED="1")
    return env
