"""Replication API on a real engine run (paper desk): events, one event's child orders, positions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Account
from brokers.paper.models import PaperPosition
from replication.models import Allocation, OrderMapping
from replication.orchestrator import Orchestrator
from tests.api_helpers import API, install_fake_broker
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db

IST = ZoneInfo("Asia/Kolkata")


@pytest.fixture
def traded(people):
    """The §3.6 desk after the master bought 2 lots of the future: C1 and C2 belong to alice."""
    desk = build_desk()
    Account.objects.filter(broker_user_id__in=["C1", "C2"]).update(owner=people.alice)
    orch = Orchestrator(holder="api-test", workers=0)
    try:
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
        orch.run_tick()
    finally:
        orch.close()
    return desk


def test_api_events_list_master_events_with_orders_and_counts(people, traded):
    body = people.as_staff.get(f"{API}/replication/events").json()

    assert body["count"] == 1
    event = body["results"][0]
    assert (event["kind"], event["side"], event["tradingsymbol"], event["master_quantity"]) == (
        "open",
        "BUY",
        FUT,
        150,
    )
    assert [o["quantity"] for o in event["master_orders"]] == [150]
    assert sum(event["child_orders_by_status"].values()) == OrderMapping.objects.count() == 5


def test_api_events_client_sees_only_its_child_orders(people, traded):
    event = people.as_alice.get(f"{API}/replication/events").json()["results"][0]
    detail = people.as_alice.get(f"{API}/replication/allocations/{event['id']}").json()

    assert sum(event["child_orders_by_status"].values()) == 2
    assert {o["child_user_id"] for o in detail["child_orders"]} == {"C1", "C2"}
    assert detail["event"]["master_capital"] is None


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("", 1),
        (f"?instrument=NFO:{FUT}", 1),
        (f"?instrument={FUT.lower()}", 1),
        ("?instrument=NFO:OTHER25FUT", 0),
        ("?kind=open", 1),
        ("?kind=close", 0),
        ("?status=dispatched", 1),
        ("?status=rejected", 0),
    ],
)
def test_api_events_filters(people, traded, query, count):
    response = people.as_staff.get(f"{API}/replication/events{query}")

    assert response.status_code == 200
    assert response.json()["count"] == count


def test_api_events_day_filter_uses_the_ist_trading_day(people, traded):
    allocation = Allocation.objects.get()
    seen = datetime(2026, 3, 2, 0, 30, tzinfo=IST)  # 2 March in India, still 1 March in UTC
    Allocation.objects.filter(pk=allocation.pk).update(master_seen_at=seen)

    on_day = people.as_staff.get(f"{API}/replication/events?day=2026-03-02").json()["count"]
    day_before = people.as_staff.get(f"{API}/replication/events?day={date(2026, 3, 1)}").json()["count"]

    assert (on_day, day_before) == (1, 0)


@pytest.mark.parametrize("query", ["?day=yesterday", "?kind=sideways", "?status=done"])
def test_api_events_bad_filters_are_400(people, traded, query):
    response = people.as_staff.get(f"{API}/replication/events{query}")

    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "fields"}


def test_api_events_queries_do_not_grow_with_events(people, traded):
    def count_queries():
        with CaptureQueriesContext(connection) as captured:
            assert people.as_staff.get(f"{API}/replication/events").status_code == 200
        return len(captured.captured_queries)

    few = count_queries()
    first = Allocation.objects.get()
    for n in range(5):
        twin = Allocation.objects.create(
            master=first.master,
            group_key=f"twin{n}",
            kind="open",
            exchange="NFO",
            tradingsymbol=FUT,
            product="NRML",
            side="BUY",
            master_quantity=75,
        )
        twin.master_orders.set(first.master_orders.all())
    assert count_queries() == few


def test_api_allocation_lists_every_child_order_with_status_reason_and_latency(people, traded):
    allocation = Allocation.objects.get()

    body = people.as_staff.get(f"{API}/replication/allocations/{allocation.pk}").json()

    orders = {o["child_user_id"]: o for o in body["child_orders"]}
    assert set(orders) == {"C1", "C2", "C3", "C4", "C5"}
    assert orders["C2"]["status"] == "filled" and orders["C2"]["lots"] == 4
    assert orders["C2"]["latency_ms"] is not None
    assert orders["C1"]["lots"] == 1
    assert orders["C3"]["status"] == "skipped" and orders["C3"]["reason"]


def test_api_allocation_unknown_is_404(people, traded):
    response = people.as_staff.get(f"{API}/replication/allocations/999999")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_api_positions_expected_vs_actual(people, traded):
    child = Account.objects.get(broker_user_id="C2")

    ok = people.as_alice.get(f"{API}/accounts/{child.pk}/positions").json()
    PaperPosition.objects.filter(account__user_id="C2").update(quantity=75)  # the client sold 5 lots itself
    drifted = people.as_alice.get(f"{API}/accounts/{child.pk}/positions").json()

    assert ok["positions"] == [
        {
            "exchange": "NFO",
            "tradingsymbol": FUT,
            "product": "NRML",
            "expected": 300,
            "actual": 300,
            "difference": 0,
            "lot_size": 75,
            "grade": "ok",
        }
    ]
    assert (drifted["positions"][0]["actual"], drifted["positions"][0]["grade"]) == (75, "major")


def test_api_positions_unreadable_broker_is_unknown_not_500(people, traded, monkeypatch):
    from brokers.errors import BrokerUnavailable

    fake = install_fake_broker(monkeypatch)
    fake.held = []

    def broken():
        raise BrokerUnavailable("down")

    monkeypatch.setattr(fake, "positions", broken)
    child = Account.objects.get(broker_user_id="C2")

    body = people.as_alice.get(f"{API}/accounts/{child.pk}/positions").json()

    assert (body["positions"][0]["actual"], body["positions"][0]["grade"]) == (None, "unknown")


def test_api_positions_of_account_without_replicated_orders_is_empty(people, traded):
    master = Account.objects.get(broker_user_id="MASTER")

    body = people.as_staff.get(f"{API}/accounts/{master.pk}/positions").json()

    assert body["positions"] == [] and body["account"] == master.pk
    assert datetime.fromisoformat(body["checked_at"].replace("Z", "+00:00")) > datetime.now(IST) - timedelta(
        minutes=1
    )
