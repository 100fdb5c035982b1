"""The Kite instruments dump, downloaded at most once per trading day and kept in process.

Kite regenerates the dump once a day, before the market opens (API.md §9), so the cache key is
the IST date with the day starting at `rollover` (08:30 IST by default): a read at 07:00 reuses
yesterday's download, the first read after 08:30 fetches the new dump. Instruments are keyed by
(exchange, tradingsymbol), never by token (tokens of expired contracts are reused).

The dump is the same for every account, so one cache per API root is shared by all Kite clients
(`shared_cache`); concurrent first readers wait for a single download.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from brokers.kite.parse import IST
from brokers.types import Instrument, InstrumentKey

DEFAULT_ROLLOVER = time(8, 30)

Loader = Callable[[], list[Instrument]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InstrumentCache:
    """Instruments of one trading day, loaded on first use through the loader given to `all`/`get`."""

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow, rollover: time = DEFAULT_ROLLOVER):
        self._clock = clock
        self._rollover = timedelta(hours=rollover.hour, minutes=rollover.minute)
        self._lock = threading.Lock()
        self._day: date | None = None
        self._rows: tuple[Instrument, ...] = ()
        self._by_key: dict[InstrumentKey, Instrument] = {}

    def trading_day(self, now: datetime | None = None) -> date:
        """The cache key for `now` (aware): the IST date, with the day starting at `rollover`."""
        moment = (now or self._clock()).astimezone(IST)
        return (moment - self._rollover).date()

    @property
    def loaded_day(self) -> date | None:
        return self._day

    def _ensure(self, loader: Loader) -> None:
        day = self.trading_day()
        if self._day == day:
            return
        with self._lock:
            if self._day == day:  # another thread loaded it while we waited
                return
            rows = tuple(loader())  # errors propagate; the previous day's data is not served
            self._by_key = {row.key: row for row in rows}
            self._rows = rows
            self._day = day

    def all(self, loader: Loader) -> list[Instrument]:
        self._ensure(loader)
        return list(self._rows)

    def get(self, key: InstrumentKey, loader: Loader) -> Instrument | None:
        self._ensure(loader)
        return self._by_key.get(key)

    def clear(self) -> None:
        with self._lock:
            self._day = None
            self._rows = ()
            self._by_key = {}


_shared: dict[str, InstrumentCache] = {}
_shared_lock = threading.Lock()


def shared_cache(root: str) -> InstrumentCache:
    """The process-wide cache for the API at `root`."""
    with _shared_lock:
        cache = _shared.get(root)
        if cache is None:
            cache = _shared[root] = InstrumentCache()
        return cache
