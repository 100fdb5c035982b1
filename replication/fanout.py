"""A bounded pool for broker calls across accounts (never inside a database transaction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings

T = TypeVar("T")
R = TypeVar("R")


class FanOut:
    """`map` runs a function over items concurrently (or inline when workers is 0) and flattens."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = getattr(settings, "FANOUT_WORKERS", 64) if workers is None else workers
        self._pool: ThreadPoolExecutor | None = None

    def map(self, fn: Callable[[T], list[R]], items: Sequence[T]) -> list[R]:
        if not items:
            return []
        if self.workers <= 0 or len(items) == 1:
            return [r for item in items for r in fn(item)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fanout")
        return [r for chunk in self._pool.map(fn, items) for r in chunk]

    def close(self) -> None:
        """Stop the worker threads (their database connections close with them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
