"""What a run tells its user: a progress bar, JSON-lines metrics and TensorBoard events.

TensorBoard event files come from tensorboardX, which needs no TensorFlow.
Only process 0 writes; the others stay quiet.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import jax
import numpy as np
import tqdm


class MetricWriter:
    def __init__(self, workdir: str | Path, *, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            from tensorboardX import SummaryWriter  # imported late: it is slow to import
            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

    def write(self, step: int, kind: str, metrics: dict) -> None:
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": int(step), "kind": kind, "time": time.time(), **scalars}) + "\n")
        for name, value in scalars.items():
            if math.isfinite(value):
                self._tb.add_scalar(f"{kind}/{name}", value, int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class Progress:
    """A tqdm bar with ETA and clips/s over the whole stage."""

    def __init__(self, total_steps: int, initial_step: int, clips_per_step: int, desc: str):
        self.clips_per_step = clips_per_step
        self._bar = tqdm.tqdm(
            total=total_steps, initial=initial_step, desc=desc, unit="step", dynamic_ncols=True,
            disable=jax.process_index() != 0, file=sys.stderr, mininterval=1.0,
        )
        self._start, self._done = time.perf_counter(), 0

    def update(self, metrics: dict) -> None:
        self._done += 1
        rate = self._done * self.clips_per_step / max(time.perf_counter() - self._start, 1e-9)
        shown = {k: f"{float(v):.3g}" for k, v in metrics.items() if k in ("loss", "accuracy", "learning_rate")}
        self._bar.set_postfix(clips_per_s=f"{rate:.1f}", **shown, refresh=False)
        self._bar.update(1)

    def write(self, line: str) -> None:
        if jax.process_index() == 0:
            self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
