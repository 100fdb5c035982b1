"""The phase timer: timing wraps a step of the tick instead of running through it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def phase(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record how long the wrapped step took, in milliseconds, under `name` (when it finishes)."""
    started = time.perf_counter()
    yield
    timings[name] = (time.perf_counter() - started) * 1000
