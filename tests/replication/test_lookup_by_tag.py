"""An unknown outcome is looked up by tag, never blindly re-sent (DESIGN §4.2), and where the broker
answers a query by tag (capabilities `OrderLookup.BY_TAG`: Dhan's GET /orders/external/{id}) the
engine asks it per unknown tag instead of reading the whole order book.

A 404 from that query is no proof of absence (Dhan answers it for an order still in TRANSIT,
FACTS.md): absence is still proven only as before, by an order book read at least the grace period
after the send that does not hold the tag.

The desk of DESIGN §3.6 with C4 on Dhan: DhanBroker and the real dhanhq SDK, its HTTP calls
answered in this thread by the Dhan simulator (tests.faulty_broker.serve_in_process), each client a
FaultyDhan switched by `faults`. The master buys 2 lots; C4's entry is 1 lot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from brokers import registry
from brokers.dhan.budget import WriteBudget, forget_budgets
from brokers.dhan.scrip import ScripCache
from brokers.paper.models import PaperOrder
from lab.dhan_demo import move_to_dhan
from lab.dhan_sim.server import DhanSim
from replication.models import MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from tests.engine_helpers import FUT, Desk, build_desk
from tests.faulty_broker import Faults, FaultyDhan, serve_in_process

pytestmark = pytest.mark.django_db

DHAN_ROOT = "http://127.0.0.1:11"  # loopback (the simulator's credentials stay here); nothing listens
CHILD = "C4"
BY_TAG = "GET /v2/orders/external/{id}"
BOOK = "GET /v2/orders"


class Ticking:
    """A clock for the order budget that moves a second a look (budgets are not under test)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@pytest.fixture
def dhan(faults: Faults, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Desk, DhanSim]]:
    from django.conf import settings

    sim = DhanSim()
    cache = ScripCache()
    clock = Ticking()

    def factory(creds: Any) -> FaultyDhan:
        client = FaultyDhan(
            client_id=creds.user_id,
            access_token=creds.access_token,
            pin=creds.pin,
            totp_secret=creds.totp_secret,
            api_key=creds.api_key,
            root=DHAN_ROOT,
            scrip_cache=cache,
            budget=WriteBudget(clock=clock, sleep=clock.sleep),
            sleep=clock.sleep,
        )
        client.faults = faults
        return client

    monkeypatch.setattr(settings, "DHAN_API_ROOT", DHAN_ROOT)
    serve_in_process(monkeypatch, DHAN_ROOT, sim)
    previous = registry.register("dhan", factory)
    forget_budgets()
    try:
        desk = build_desk()
        move_to_dhan(desk.children[CHILD], sim)
        yield desk, sim
    finally:
        if previous is None:
            registry.unregister("dhan")
        else:
            registry.register("dhan", previous)
        forget_budgets()


def _entry(desk: Desk, orch: Orchestrator) -> OrderMapping:
    """The master buys 2 lots; the tick sends C4's entry and returns its mapping."""
    assert orch.run_tick().leader  # the master's baseline
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    return OrderMapping.objects.get(child__broker_user_id=CHILD, quantity__gt=0)


def _at_broker() -> list[str]:
    return list(PaperOrder.objects.filter(account__user_id=CHILD).values_list("tag", flat=True))


def _hits(sim: DhanSim) -> tuple[int, int]:
    return sim.hit_count(client_id=CHILD, route=BY_TAG), sim.hit_count(client_id=CHILD, route=BOOK)


def test_a_timeout_after_accept_is_found_by_its_correlation_id_without_reading_the_book(dhan, faults):
    desk, sim = dhan
    faults.place_then_unknown.add(CHILD)
    orch = Orchestrator(holder="lookup", workers=0)
    try:
        mapping = _entry(desk, orch)
        assert mapping.status == MappingStatus.UNKNOWN
        tag_before, book_before = _hits(sim)

        orch.run_tick()

        mapping.refresh_from_db()
        tag_after, book_after = _hits(sim)
        assert mapping.status == MappingStatus.FILLED
        assert mapping.broker_order_id
        assert tag_after - tag_before == 1, "the unknown tag is asked for at /orders/external/"
        assert book_after == book_before, "no order book read for the lookup"
        assert _at_broker() == [mapping.tag]  # placed once, never re-sent
        assert [p for p in faults.places if p[0] == CHILD] == [(CHILD, mapping.tag)]
    finally:
        orch.close()


def test_none_by_tag_within_the_grace_period_is_no_absence_and_reads_no_book(dhan, faults):
    """Nothing found by tag before the grace period is over: the outcome stays unknown (looked up
    again), nothing is re-sent and the book is not read for it."""
    desk, sim = dhan
    faults.place_then_unknown.add(CHILD)
    faults.by_tag_misses.add(CHILD)
    orch = Orchestrator(holder="lookup", workers=0)
    try:
        with override_settings(UNKNOWN_GRACE_SECONDS=3600):
            mapping = _entry(desk, orch)
            tag_before, book_before = _hits(sim)
            orch.run_tick()
        mapping.refresh_from_db()
        tag_after, book_after = _hits(sim)
        assert mapping.status == MappingStatus.UNKNOWN
        assert tag_after - tag_before == 1
        assert book_after == book_before
        assert _at_broker() == [mapping.tag]
    finally:
        orch.close()


def test_none_by_tag_is_no_proof_of_absence_the_book_still_decides(dhan, faults):
    """Dhan answers 404 by tag for an order still in TRANSIT, which its order book shows: past the
    grace period the book is read, the order is found there and not sent again."""
    desk, sim = dhan
    faults.place_then_unknown.add(CHILD)
    faults.by_tag_misses.add(CHILD)
    orch = Orchestrator(holder="lookup", workers=0)
    try:
        mapping = _entry(desk, orch)
        _, book_before = _hits(sim)
        for _ in range(3):
            orch.run_tick()
        mapping.refresh_from_db()
        assert mapping.status == MappingStatus.FILLED
        assert sim.hit_count(client_id=CHILD, route=BOOK) > book_before
        assert _at_broker() == [mapping.tag]
        assert [p for p in faults.places if p[0] == CHILD] == [(CHILD, mapping.tag)]
    finally:
        orch.close()


def test_an_unknown_write_that_never_reached_dhan_is_sent_again_once(dhan, faults):
    """A timeout before Dhan took the order: not found by tag, not in the book past the grace period:
    proven absent, sent again once; exactly one order at the broker."""
    desk, sim = dhan
    faults.unknown_not_placed.add(CHILD)
    orch = Orchestrator(holder="lookup", workers=0)
    try:
        mapping = _entry(desk, orch)
        assert mapping.status == MappingStatus.UNKNOWN
        assert _at_broker() == []
        for _ in range(3):
            orch.run_tick()
        mapping.refresh_from_db()
        assert mapping.status == MappingStatus.FILLED
        assert sim.hit_count(client_id=CHILD, route=BY_TAG) >= 1
        assert _at_broker() == [mapping.tag]
    finally:
        orch.close()


def test_a_crash_before_the_acks_are_written_is_recovered_by_tag(dhan, faults):
    """The engine dies after every place call went out and before their answers were written (all
    mappings SENDING). The restarted engine looks C4's tag up by its correlation id, finds the
    order without reading C4's book, and sends nothing twice; the book-scan children are found in
    their books as before."""
    from datetime import timedelta

    from django.utils import timezone

    from replication import failpoints
    from replication.failpoints import FailpointTriggered
    from replication.models import OrchestratorLease

    desk, sim = dhan
    first = Orchestrator(holder="first", workers=0)
    try:
        assert first.run_tick().leader
        desk.place("BUY", FUT, 150)
        failpoints.configure({"before_ack_commit": "raise:1"})
        with pytest.raises(FailpointTriggered):
            first.run_tick()
    finally:
        failpoints.reset()
        first.close()
    sent = OrderMapping.objects.filter(quantity__gt=0)
    assert set(sent.values_list("status", flat=True)) == {MappingStatus.SENDING}
    tag_before, book_before = _hits(sim)

    OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    second = Orchestrator(holder="second", workers=0)
    try:
        assert second.run_tick().leader
    finally:
        second.close()

    tag_after, book_after = _hits(sim)
    assert tag_after - tag_before == 1
    assert book_after == book_before
    mapping = OrderMapping.objects.get(child__broker_user_id=CHILD, quantity__gt=0)
    assert mapping.status == MappingStatus.FILLED
    assert _at_broker() == [mapping.tag]
    for m in sent:
        assert m.status == MappingStatus.FILLED
        assert PaperOrder.objects.filter(tag=m.tag).count() == 1, m.tag
