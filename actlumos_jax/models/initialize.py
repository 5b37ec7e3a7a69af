"""Building an NNX module with all of its initializers in one compiled program.

Built eagerly, every parameter's initializer is its own small XLA program, one
per distinct shape, and on CPU each costs 0.5-3 s to compile (the threefry
random bits at LLVM's default optimisation level): ~25 s for R(2+1)D-34 or
for the tiny test model before the first step. ``construct`` traces the
constructor once and compiles it as one program, on CPU at backend
optimisation level 1, which compiles in seconds. The random bits are the same;
the floats may round differently in the last places (identical on the CPU
this was written on; ``tests/models/test_initialize.py``).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import jax
from flax import nnx

M = TypeVar("M", bound=nnx.Module)

# XLA:CPU's LLVM level for the init program. On the CPU this was measured on, level 0
# compiles as fast but rounds the normal initializers' erf_inv differently from an
# eager build, and level 1 gave identical parameters; another CPU may differ in the
# last places, which the test allows.
CPU_INIT_OPTIMIZATION_LEVEL = 1


def construct(ctor: Callable[[nnx.Rngs], M], rngs: nnx.Rngs) -> M:
    """``ctor(rngs)``, with the same parameters and the same advance of ``rngs`` as an eager call.

    Under a trace (``nnx.eval_shape``, ``jit``) it is ``ctor(rngs)``: the outer program compiles it.
    """
    if isinstance(jax.numpy.zeros(()), jax.core.Tracer):  # every op is staged out under a trace
        return ctor(rngs)
    rngs_graph, rngs_state = nnx.split(rngs)

    def init(state):
        own = nnx.merge(rngs_graph, state)
        module = ctor(own)
        return nnx.split(module), nnx.state(own)

    (graphdef, _), _ = jax.eval_shape(init, rngs_state)
    options = {}
    if jax.default_backend() == "cpu":
        options["xla_backend_optimization_level"] = CPU_INIT_OPTIMIZATION_LEVEL
    module_state, rngs_after = jax.jit(lambda s: _states(init(s)), compiler_options=options)(rngs_state)
    nnx.update(rngs, rngs_after)
    return nnx.merge(graphdef, module_state)


def _states(initialized):
    (_, module_state), rngs_state = initialized
    return module_state, rngs_state
