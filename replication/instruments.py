"""Instrument look-ups (lot size, freeze quantity) from the master's broker, cached per IST day."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

from brokers.base import BrokerClient
from brokers.types import Instrument, InstrumentKey

IST = ZoneInfo("Asia/Kolkata")
RELOAD_ON_MISS_AFTER_S = 300.0


class InstrumentCache:
    def __init__(self) -> None:
        self._by_key: dict[InstrumentKey, Instrument] = {}
        self._day: date | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def _load(self, client: BrokerClient) -> None:
        self._by_key = {i.key: i for i in client.instruments()}
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
