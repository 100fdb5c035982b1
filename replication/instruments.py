"""Instrument look-ups (lot size, freeze quantity) from the master's broker, cached per IST day.

A derivative whose broker gives no freeze quantity (Kite's instrument list has none) takes its
underlying's from `settings.FREEZE_QUANTITIES`, so orders above it are sliced on every broker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.conf import settings

from brokers.base import BrokerClient
from brokers.types import Instrument, InstrumentKey

IST = ZoneInfo("Asia/Kolkata")
RELOAD_ON_MISS_AFTER_S = 300.0


def with_freeze_quantity(instrument: Instrument, freezes: dict[str, int]) -> Instrument:
    """The instrument, with its underlying's configured freeze quantity if the broker gave none."""
    if instrument.freeze_quantity or not instrument.underlying:
        return instrument
    configured = freezes.get(instrument.underlying.upper())
    return replace(instrument, freeze_quantity=configured) if configured else instrument


class InstrumentCache:
    def __init__(self) -> None:
        self._by_key: dict[InstrumentKey, Instrument] = {}
        self._day: date | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def _load(self, client: BrokerClient) -> None:
        freezes: dict[str, int] = settings.FREEZE_QUANTITIES
        self._by_key = {i.key: with_freeze_quantity(i, freezes) for i in client.instruments()}
        self._day = datetime.now(IST).date()
        self._loaded_at = time.monotonic()

    def get(self, client: BrokerClient, key: InstrumentKey) -> Instrument | None:
        with self._lock:
            if self._day != datetime.now(IST).date():
                self._load(client)
            found = self._by_key.get(key)
            if found is None and time.monotonic() - self._loaded_at > RELOAD_ON_MISS_AFTER_S:
                self._load(client)
                found = self._by_key.get(key)
            return found

    def invalidate(self) -> None:
        with self._lock:
            self._day = None
