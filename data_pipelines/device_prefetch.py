"""Batches onto the devices ahead of the step that needs them."""

from __future__ import annotations

import queue
import threading
from typing import Any

import jax
import numpy as np


class DevicePrefetcher:
    """Iterator of global ``jax.Array`` batches, ``size`` of them in flight.

    A background thread pulls per-process NumPy batches and assembles each
    batched leaf with ``jax.make_array_from_process_local_data``; scalar leaves
    (``skipped``) stay host NumPy. ``get_state()`` is the wrapped iterator's
    state right after the last batch handed out, so a checkpoint resumes at
    exactly the next batch despite the read-ahead.
    """

    _END = object()

    def __init__(self, iterator, sharding: jax.sharding.Sharding, size: int = 2):
        self._iterator = iterator
        self._sharding = sharding
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, size))
        self._state = iterator.get_state() if hasattr(iterator, "get_state") else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True, name="device_prefetch")
        self._thread.start()

    def _to_device(self, leaf):
        leaf = np.asarray(leaf)
        if leaf.ndim == 0:
            return leaf
        return jax.make_array_from_process_local_data(self._sharding, leaf)

    def _fill(self) -> None:
        try:
            for batch in self._iterator:
                state = self._iterator.get_state() if self._state is not None else None
                item = (jax.tree_util.tree_map(self._to_device, batch), state)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(self._END)
        except BaseException as e:  # pylint: disable=broad-except
            self._queue.put(e)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._END:
            self._queue.put(self._END)
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        batch, self._state = item
        return batch

    def get_state(self) -> dict[str, Any]:
        if self._state is None:
            raise TypeError("the wrapped iterator has no get_state()")
        return self._state

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def device_prefetch(iterator, sharding: jax.sharding.Sharding, size: int = 2) -> DevicePrefetcher:
    """Global ``jax.Array`` batches from per-process NumPy batches, ``size`` in flight."""
    return DevicePrefetcher(iter(iterator), sharding, size)
