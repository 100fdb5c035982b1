"""The master's funds and order book are read together, in one round trip, not one after the
other (issue 17: the second read added a broker round trip to every event's detection)."""

from __future__ import annotations

import threading

import pytest

from brokers.errors import BrokerUnavailable
from brokers.paper.client import PaperBroker
from replication.orchestrator import Orchestrator
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db(transaction=True)


def event_tick(desk):
    """The master places an order; one tick with a pool of 4 reads it."""
    desk.place("BUY", FUT, 150)
    orch = Orchestrator(holder="read", workers=4)
    try:
        return orch.run_tick()
    finally:
        orch.close()


def test_funds_and_orders_of_the_master_are_in_flight_at_the_same_time(monkeypatch):
    desk = build_desk()
    master_id = desk.master.broker_user_id
    both = threading.Barrier(2, timeout=5)
    funds, orders = PaperBroker.funds, PaperBroker.orders

    def meeting(read):
        def wrapped(self, *args, **kwargs):
            if self.user_id == master_id:
                both.wait()  # returns only when the other read is in flight too
            return read(self, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(PaperBroker, "funds", meeting(funds))
    monkeypatch.setattr(PaperBroker, "orders", meeting(orders))
    result = event_tick(desk)
    assert not result.errors
    assert result.events == 1 and result.intents >= 3


@pytest.mark.parametrize("failing", ["funds", "orders"])
def test_either_master_read_failing_decides_nothing_this_tick(monkeypatch, failing):
    desk = build_desk()
    master_id = desk.master.broker_user_id
    real = getattr(PaperBroker, failing)

    def broken(self, *args, **kwargs):
        if self.user_id == master_id:
            raise BrokerUnavailable(f"{failing} unavailable")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PaperBroker, failing, broken)
    result = event_tick(desk)
    assert result.events == 0 and result.intents == 0
    assert any("master read failed" in e and f"{failing} unavailable" in e for e in result.errors)
