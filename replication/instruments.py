"""Instrument look-ups (lot size, freeze quantity) from the master's broker, cached per IST day.

A derivative whose broker gives no freeze quantity (Kite's instrument list has none) takes its
underlying's from the freeze-quantity table staff keep (`brokers.freeze`: the admin's table, with
`settings.FREEZE_QUANTITIES` as an override), so orders above it are sliced on every broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from zoneinfo import ZoneInfo

from brokers import freeze
from brokers.base import BrokerClient
from brokers.errors import BrokerError
from brokers.types import Instrument, InstrumentKey

logger = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
RELOAD_ON_MISS_AFTER_S = 300.0
WARM_RETRY_AFTER_S = 60.0  # an idle tick whose read of the list failed tries again this much later


def with_freeze_quantity(instrument: Instrument, freezes: Mapping[str, int] | None = None) -> Instrument:
    """The instrument, with its underlying's freeze quantity if the broker gave none: from
    `freezes` (a configured override) first, else the staff table (read only when needed)."""
    if instrument.freeze_quantity or not instrument.underlying:
        return instrument
    table = freeze.freeze_table()
    table.update({name.upper(): quantity for name, quantity in (freezes or {}).items()})
    return freeze.with_freeze_quantity(instrument, table)


class InstrumentCache:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_key: dict[InstrumentKey, Instrument] = {}
        self._day: date | None = None
        self._loaded_at = 0.0
        self._warm_failed_at: float | None = None
        self._lock = threading.Lock()

    def _load(self, client: BrokerClient) -> None:
        listing = client.instruments()
        table = freeze.freeze_table()
        self._by_key = {i.key: freeze.with_freeze_quantity(i, table) for i in listing}
        self._day = datetime.now(IST).date()
        self._loaded_at = self._clock()

    def get(self, client: BrokerClient, key: InstrumentKey) -> Instrument | None:
        with self._lock:
            if self._day != datetime.now(IST).date():
                self._load(client)
            found = self._by_key.get(key)
            if found is None and self._clock() - self._loaded_at > RELOAD_ON_MISS_AFTER_S:
                self._load(client)
                found = self._by_key.get(key)
            return found

    def warm(self, client: BrokerClient) -> bool:
        """Load the day's listing ahead of the day's first event (idle ticks), so that its
        detection does not wait for the broker's instrument dump. False when the read failed:
        the event that needs the listing reads it again."""
        with self._lock:
            if self._day == datetime.now(IST).date():
                return True
            failed = self._warm_failed_at
            if failed is not None and self._clock() - failed < WARM_RETRY_AFTER_S:
                return False  # not every idle tick: once a minute while the broker fails
            try:
                self._load(client)
            except BrokerError as exc:
                self._warm_failed_at = self._clock()
                logger.warning("instrument list not loaded ahead of the first event: %s", exc)
                return False
            self._warm_failed_at = None
            return True

    def invalidate(self) -> None:
        with self._lock:
            self._day = None
