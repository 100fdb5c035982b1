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

    @property
    def first_wave(self) -> int:
        """Children in an opening group's first wave (`FANOUT_FIRST_WAVE`, at most one per worker;
        0 without workers: everything is sized and sent at once)."""
        return max(0, min(self.workers, int(settings.FANOUT_FIRST_WAVE)))

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fanout")
        return self._pool

    def map(self, fn: Callable[[T], list[R]], items: Sequence[T]) -> list[R]:
        if not items:
            return []
        if self.workers <= 0 or len(items) == 1:
            return [r for item in items for r in fn(item)]
        return [r for chunk in self._executor().map(fn, items) for r in chunk]

    def submit(self, fn: Callable[[T], list[R]], items: Sequence[T]) -> Callable[[], list[R]]:
        """`map` started now and collected later: returns the function that waits for the results
        (in the order of `items`, flattened). Inline (no workers) the work is done here."""
        if self.workers <= 0 or len(items) <= 1:
            done = self.map(fn, items)
            return lambda: done
        futures = [self._executor().submit(fn, item) for item in items]
        return lambda: [r for future in futures for r in future.result()]

    def start(self) -> int:
        """Start every worker thread now (idle ticks), not one per submit in the middle of the
        next fan-out: the executor starts threads lazily, and starting 64 of them while the first
        sends already compete for the interpreter took ~0.1-0.2 s of the first event's fan-out.
        Returns how many threads were started (0 when they all run already)."""
        if self.workers <= 0:
            return 0
        pool = self._executor()
        missing = self.workers - len(pool._threads)  # the executor's own count of started threads
        if missing <= 0:
            return 0
        # Every task waits until all have been taken, so each one needs a thread of its own.
        barrier = threading.Barrier(self.workers)

        def meet() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=10)

        for future in [pool.submit(meet) for _ in range(self.workers)]:
            future.result()
        return missing

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
