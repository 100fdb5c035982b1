"""A bounded pool for broker calls across accounts (never inside a database transaction)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings
from django.db import connections

T = TypeVar("T")
R = TypeVar("R")


class FanOut:
    """`map` runs a function over items concurrently (or inline when workers is 0) and flattens."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = settings.FANOUT_WORKERS if workers is None else workers
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
        """Close every worker thread's database connections, then stop the threads.

        Django keeps one connection per thread; a pool thread would hold its connection (a
        PostgreSQL session) until the process exits. One closing task per thread, held at a
        barrier so that each thread takes exactly one, closes them where they were opened.
        """
        if self._pool is None:
            return
        threads = len(self._pool._threads)  # the executor's own count of started threads
        if threads:
            barrier = threading.Barrier(threads)

            def close_connections() -> None:
                # A thread stuck elsewhere breaks the barrier: close ours anyway.
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=10)
                connections.close_all()

            for _ in range(threads):
                self._pool.submit(close_connections)
        self._pool.shutdown(wait=True)
        self._pool = None
