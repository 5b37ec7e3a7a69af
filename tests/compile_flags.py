"""XLA flags for every JAX process the tests run, in-process and main.py subprocesses alike.

The tests compile far more than they compute (a tiny model's train step: ~20 s to compile, ~0.1 s to
run), so XLA:CPU generates code at LLVM level 0, which cuts compile time by about a third (the SPMD
equality test: 45 s of compiling down to 27 s). It changes how fast the code runs, not what it
computes; the tests' tolerances come from float32 rounding, not from one compiler's output.
"""

COMPILE_FAST = "--xla_backend_optimization_level=0"


def xla_flags(devices: int) -> str:
    """``devices`` fake CPU devices, fast compiles."""
    return f"--xla_force_host_platform_device_count={devices} {COMPILE_FAST}"
