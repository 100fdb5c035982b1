"""Issue 12 item 6: a client sees its own figures only, nothing to work out the master's capital from."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Account
from replication.models import Allocation, OrderMapping
from replication.orchestrator import Orchestrator
from tests.engine_helpers import FUT, build_desk
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

API = "/api/v1"
# The master's figures a client could combine into the master's capital.
MASTER_ONLY = (
    "master_capital",
    "attributed_margin",
    "fraction",
    "exit_ratio",
    "master_quantity",
    "master_lots",
    "master_position_before",
    "margin_source",
    "reason",
)
CLIENT_ORDER_FIELDS = ("quantity", "lots", "capital", "target_margin", "status", "reason")


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def _get(client: APIClient, path: str) -> Any:
    response = client.get(f"{API}{path}", secure=True)
    assert response.status_code == 200, response.content
    return response.json()


def _values(body: Any) -> list[Any]:
    """Every scalar anywhere in a JSON body."""
    if isinstance(body, dict):
        return [v for value in body.values() for v in _values(value)]
    if isinstance(body, list):
        return [v for value in body for v in _values(value)]
    return [body]


@pytest.fixture
def traded():
    """The §3.6 desk after the master bought 2 lots of the future: C1 and C2 belong to alice."""
    alice = UserFactory(username="alice")
    desk = build_desk()
    Account.objects.filter(broker_user_id__in=["C1", "C2"]).update(owner=alice)
    orch = Orchestrator(holder="security-test", workers=0)
    try:
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
        orch.run_tick()
    finally:
        orch.close()
    return _client(alice), _client(StaffFactory(username="operator"))


def test_client_sees_no_master_figures_in_events_or_allocation_detail(traded):
    """Issue 12 item 6: no fraction, master capital, attributed margin, master quantity or lots."""
    as_alice, _ = traded
    allocation = Allocation.objects.get()
    assert allocation.master_capital and allocation.attributed_margin and allocation.fraction

    event = _get(as_alice, "/replication/events")["results"][0]
    detail = _get(as_alice, f"/replication/allocations/{event['id']}")

    for shown in (event, detail["event"]):
        assert {name: shown[name] for name in MASTER_ONLY} == dict.fromkeys(MASTER_ONLY)
        assert shown["master_orders"] == []  # the master's own order: its quantity and fills
    secrets = {
        Decimal(allocation.master_capital),
        Decimal(allocation.attributed_margin),
        Decimal(allocation.fraction),
    }
    for body in (event, detail):
        numbers = {Decimal(str(v)) for v in _values(body) if isinstance(v, (int, str)) and _number(v)}
        assert not numbers & secrets, numbers & secrets


def test_client_still_sees_its_own_orders_with_quantity_lots_capital_target_and_reason(traded):
    """Issue 12 item 6: the client's own order figures stay visible to it."""
    as_alice, _ = traded
    event = _get(as_alice, "/replication/events")["results"][0]
    detail = _get(as_alice, f"/replication/allocations/{event['id']}")

    mine = {o["child_user_id"]: o for o in detail["child_orders"]}
    assert set(mine) == {"C1", "C2"}
    c2 = OrderMapping.objects.get(child__broker_user_id="C2")
    assert (mine["C2"]["quantity"], mine["C2"]["lots"]) == (c2.quantity, c2.lots)
    assert Decimal(mine["C2"]["capital"]) == c2.capital
    assert Decimal(mine["C2"]["target_margin"]) == c2.target_margin
    assert all(name in mine["C1"] for name in CLIENT_ORDER_FIELDS)
    assert (event["side"], event["tradingsymbol"], event["lot_size"]) == ("BUY", FUT, 75)


def test_staff_still_see_every_master_figure(traded):
    """Issue 12 item 6: hiding the master's figures from clients leaves staff seeing them all."""
    _, as_staff = traded
    allocation = Allocation.objects.get()

    event = _get(as_staff, "/replication/events")["results"][0]
    detail = _get(as_staff, f"/replication/allocations/{event['id']}")

    for shown in (event, detail["event"]):
        assert Decimal(shown["master_capital"]) == allocation.master_capital
        assert Decimal(shown["attributed_margin"]) == allocation.attributed_margin
        assert Decimal(shown["fraction"]) == allocation.fraction
        assert (shown["master_quantity"], shown["master_lots"]) == (150, 2)
        assert [o["quantity"] for o in shown["master_orders"]] == [150]
    assert len(detail["child_orders"]) == OrderMapping.objects.count()


def _number(value: Any) -> bool:
    try:
        return Decimal(str(value)).is_finite()
    except ArithmeticError:
        return False
