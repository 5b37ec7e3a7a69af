"""Seconds to build the student or teacher in a fresh process: eagerly (one XLA program per
initializer shape) against ``build_model``'s one compiled program (``actlumos_jax/models/initialize.py``).

    python -m bench.model_build [--size tiny|paper] [--kind student|teacher]

Each way runs in its own subprocess, so neither finds the other's compiled programs; run with no
persistent compilation cache (the default here). Prints both times and whether the parameters match.
"""

import argparse
import json
import subprocess
import sys
import time


def _build(size: str, kind: str, how: str) -> dict:
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top

    from actlumos_jax.models import actlumos  # pylint: disable=g-import-not-at-top
    from configs import kd_student  # pylint: disable=g-import-not-at-top

    config = kd_student.get_config(f"size={size}")
    if how == "eager":  # the constructor called directly, as before initialize.construct
        actlumos.construct = lambda ctor, rngs: ctor(rngs)
    start = time.perf_counter()
    model = actlumos.build_model(config.model, 11, kind=kind, rngs=nnx.Rngs(0, dropout=1, mask=2))
    jax.block_until_ready(nnx.state(model))
    seconds = time.perf_counter() - start
    params = [np.asarray(p, np.float64) for p in jax.tree.leaves(nnx.state(model, nnx.Param))]
    return {"seconds": seconds, "sum_abs": float(sum(np.abs(p).sum() for p in params)), "leaves": len(params)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="paper", choices=("tiny", "paper"))
    parser.add_argument("--kind", default="student", choices=("student", "teacher"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_build(args.size, args.kind, args.child)))
        return
    results = {}
    for how in ("eager", "compiled"):
        out = subprocess.run([sys.executable, "-m", "bench.model_build", "--size", args.size, "--kind", args.kind,
                              "--child", how], capture_output=True, text=True, check=True)
        results[how] = json.loads(out.stdout.strip().splitlines()[-1])
    e, c = results["eager"], results["compiled"]
    print(f"{args.kind} at size={args.size}: eager {e['seconds']:.1f} s, one compiled program {c['seconds']:.1f} s "
          f"({e['seconds'] / c['seconds']:.1f}x); {c['leaves']} parameter tensors, sum |p| "
          f"{'identical' if e['sum_abs'] == c['sum_abs'] else f'differs: {e['sum_abs']!r} vs {c['sum_abs']!r}'}")


if __name__ == "__main__":
    main()
