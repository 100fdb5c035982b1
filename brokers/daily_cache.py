"""A broker's instrument master, loaded once per source and IST day, shared by every client.

The Angel One scrip master, the Dhan security-id master and the Alice Blue contract master are all
downloaded at most once a day per source (URL or file) and shared by every account's client in the
process: `DailyCache.get(load)` calls `load` on first use and again once the IST day has turned;
`per_source(source)` hands out the process-wide cache of one source. Each adapter keeps its own
master (rows, keys, lookups) and names its cache class.

Standard library only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")

M = TypeVar("M")


class DailyCache(Generic[M]):
    """One master per IST day (thread-safe)."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._master: M | None = None
        self._day: date | None = None
        self._lock = threading.Lock()

    def get(self, load: Callable[[], M]) -> M:
        today = self._clock().astimezone(IST).date()
        with self._lock:
            if self._master is None or self._day != today:
                self._master = load()
                self._day = today
            return self._master

    def clear(self) -> None:
        with self._lock:
            self._master = None
            self._day = None


C = TypeVar("C", bound=DailyCache)  # type: ignore[type-arg]


class PerSource(Generic[C]):
    """The process-wide cache of each source, made on first use."""

    def __init__(self, make: Callable[[], C]) -> None:
        self._make = make
        self._caches: dict[str, C] = {}
        self._lock = threading.Lock()

    def get(self, source: str) -> C:
        with self._lock:
            found = self._caches.get(source)
            if found is None:
                found = self._caches[source] = self._make()
            return found
