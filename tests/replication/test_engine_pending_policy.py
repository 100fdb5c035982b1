"""DESIGN §3.5 through run_tick on the paper exchange: a child's LIMIT mirror still open after the
master's order filled is left alone (policy `leave`) or made MARKET after the child's delay."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.models import Account, AccountStatus, PendingPolicy
from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_order_modify
from replication.controls import engine_control_update
from replication.models import MappingStatus, MasterOrder, OrderMapping, ReplicationEvent
from replication.pending import RetryGate
from tests.engine_helpers import FUT, set_price

pytestmark = pytest.mark.django_db
LIMIT = Decimal("19900")


def policy(desk, name: str, seconds: int = 0) -> None:
    """The child converts its open mirrors to MARKET `seconds` after the master's fill."""
    Account.objects.filter(pk=desk.children[name].pk).update(
        pending_policy=PendingPolicy.MARKET_AFTER_SECONDS, market_after_seconds=seconds
    )


def child_order(desk, name: str) -> PaperOrder:
    mapping = OrderMapping.objects.get(child=desk.children[name], quantity__gt=0)
    return PaperOrder.objects.get(order_id=mapping.broker_order_id)


def mirrored_limit_then_master_fills(desk, orch, *, lagging: tuple[str, ...]) -> None:
    """Master BUY 2 lots LIMIT 19,900 (mirrored to the children); the `lagging` children's orders
    sit lower at their broker, so when the price reaches 19,900 the master fills and they do not."""
    orch.run_tick()
    desk.place("BUY", FUT, 150, order_type="LIMIT", price=LIMIT)
    orch.run_tick()
    for name in lagging:
        paper_order_modify(user_id=name, order_id=child_order(desk, name).order_id, price=Decimal("19000"))
    set_price(FUT, "19900")


def test_pending_master_fill_time_is_recorded_once(desk, orch):
    mirrored_limit_then_master_fills(desk, orch, lagging=())
    orch.run_tick()
    filled_at = MasterOrder.objects.get().filled_at
    assert filled_at is not None
    orch.run_tick()
    assert MasterOrder.objects.get().filled_at == filled_at


def test_pending_leave_keeps_the_mirror_working_at_the_master_price(desk, orch):
    mirrored_limit_then_master_fills(desk, orch, lagging=("C2",))
    result = orch.run_tick()
    assert result.converted == 0
    order = child_order(desk, "C2")
    assert (order.status, order.order_type) == ("OPEN", "LIMIT")
    assert desk.positions(FUT)["C2"] == 0


def test_pending_market_after_zero_seconds_converts_in_the_tick_that_sees_the_fill(desk, orch):
    policy(desk, "C2", seconds=0)
    mirrored_limit_then_master_fills(desk, orch, lagging=("C1", "C2"))
    result = orch.run_tick()
    assert result.converted == 1
    mapping = OrderMapping.objects.get(child=desk.children["C2"], quantity__gt=0)
    assert (mapping.order_type, mapping.price, mapping.status) == ("MARKET", 0, MappingStatus.FILLED)
    assert child_order(desk, "C2").order_type == "MARKET"
    assert desk.positions(FUT)["C2"] == 300  # in the position, like the master
    assert child_order(desk, "C1").status == "OPEN"  # C1 keeps the default policy: leave
    event = ReplicationEvent.objects.get(mapping=mapping, kind="modify_sent")
    assert "converted to MARKET (policy market_after_seconds)" in event.message


def test_pending_market_after_waits_for_the_child_delay(desk, orch):
    policy(desk, "C2", seconds=120)
    mirrored_limit_then_master_fills(desk, orch, lagging=("C2",))
    assert orch.run_tick().converted == 0  # the fill was seen just now: 120 s to go
    assert child_order(desk, "C2").status == "OPEN"
    MasterOrder.objects.update(filled_at=MasterOrder.objects.get().filled_at - timedelta(seconds=121))
    assert orch.run_tick().converted == 1
    assert desk.positions(FUT)["C2"] == 300


def test_pending_nothing_is_converted_while_the_master_order_is_open(desk, orch):
    policy(desk, "C2", seconds=0)
    orch.run_tick()
    desk.place("BUY", FUT, 150, order_type="LIMIT", price=LIMIT)
    orch.run_tick()
    assert orch.run_tick().converted == 0
    assert child_order(desk, "C2").order_type == "LIMIT"


def test_pending_halted_engine_converts_nothing_paused_child_still_converts(desk, orch):
    policy(desk, "C2", seconds=0)
    policy(desk, "C5", seconds=0)
    mirrored_limit_then_master_fills(desk, orch, lagging=("C2", "C5"))
    Account.objects.filter(pk=desk.children["C5"].pk).update(status=AccountStatus.PAUSED)
    engine_control_update(halted=True, actor="test")
    assert orch.run_tick().converted == 0
    engine_control_update(halted=False, actor="test")
    assert orch.run_tick().converted == 2  # paused stops new entries only; sync continues
    assert desk.positions(FUT)["C5"] == 75


def test_pending_child_needing_login_is_not_converted(desk, orch):
    policy(desk, "C2", seconds=0)
    mirrored_limit_then_master_fills(desk, orch, lagging=("C2",))
    Account.objects.filter(pk=desk.children["C2"].pk).update(status=AccountStatus.NEEDS_LOGIN)
    assert orch.run_tick().converted == 0
    assert child_order(desk, "C2").order_type == "LIMIT"


def test_pending_refused_conversion_is_not_retried_every_tick(desk, orch, faults):
    policy(desk, "C2", seconds=0)
    mirrored_limit_then_master_fills(desk, orch, lagging=("C2",))
    faults.modify_refused.add("C2")
    orch.run_tick()
    failed = ReplicationEvent.objects.filter(kind="modify_failed").count()
    assert failed == 1
    orch.run_tick()
    assert ReplicationEvent.objects.filter(kind="modify_failed").count() == failed


def test_retry_gate_lets_an_id_through_once_per_period():
    gate = RetryGate(every=3600)
    assert gate.take([1, 2]) == {1, 2}
    assert gate.take([1, 2, 3]) == {3}
    assert RetryGate(every=0).take([1]) == {1}
