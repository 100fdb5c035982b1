"""Issue 11 mutation proof: the allocator (sizing turned into child orders) through run_tick.

Paths the engine tests did not reach when the allocator was mutated (issue 11, "3. Proof"):
spreads other than 1:1, exits of short positions, every child limit but max lots, a child's
open positions counted from what the engine placed, child margin preflight, and an entry still
waiting for approval when the master goes flat. Each drives `Orchestrator.run_tick()` on the
paper desk of DESIGN §3.6 and asserts what reached the children's broker (the paper exchange).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from brokers.paper.models import PaperOrder
from replication.controls import engine_control_update
from replication.models import Allocation, AllocationStatus, MappingStatus, OrderMapping, ReplicationEvent
from replication.services import allocation_approve
from tests.engine_helpers import CALL, FUT, set_price

pytestmark = pytest.mark.django_db

FLAT = {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}


def sent(user: str, symbol: str | None = None) -> list[tuple[str, str, int]]:
    """(side, symbol, quantity) of every order that reached this child's broker, in order."""
    qs = PaperOrder.objects.filter(account__user_id=user)
    if symbol:
        qs = qs.filter(instrument__tradingsymbol=symbol)
    return list(qs.order_by("id").values_list("side", "instrument__tradingsymbol", "quantity"))


def limit(account, **fields) -> None:
    for name, value in fields.items():
        setattr(account, name, value)
    account.save(update_fields=[*fields, "updated_at"])


def settle(orch, ticks: int = 3) -> None:
    for _ in range(ticks):
        orch.run_tick()


def skipped(child, symbol: str = FUT) -> list[tuple[str, str]]:
    return list(
        OrderMapping.objects.filter(child=child, tradingsymbol=symbol, status=MappingStatus.SKIPPED)
        .order_by("id")
        .values_list("reason_code", "reason")
    )


def test_money_mutants_allocator_short_position_exits(desk, orch):
    """Issue 11 mutation proof, §3.4: a short master buys back half, then the rest: each short
    child buys back round(r × its lots), halves up, then everything; never more than it is short."""
    orch.run_tick()
    desk.place("SELL", FUT, 150)
    settle(orch)
    assert desk.positions(FUT) == {"C1": -75, "C2": -300, "C3": 0, "C4": -75, "C5": -75}
    desk.place("BUY", FUT, 75)  # r = 1/2
    settle(orch)
    assert desk.positions(FUT) == {"C1": 0, "C2": -150, "C3": 0, "C4": 0, "C5": 0}
    desk.place("BUY", FUT, 75)  # master flat
    settle(orch)
    assert desk.positions(FUT) == FLAT
    assert sent("C2") == [("SELL", FUT, 300), ("BUY", FUT, 150), ("BUY", FUT, 150)]
    assert sent("C3") == []


def test_money_mutants_allocator_spread_one_to_two(desk, orch):
    """Issue 11 mutation proof, §3.3 step 6: the master buys 2 calls and sells 4 futures in one
    tick: one unit is (1 call, 2 futures), the master holds 2 units, and each child gets
    floor(2 × its capital × multiplier / 10,00,000) units, its buy leg sent before its sell leg."""
    orch.run_tick()
    desk.place("BUY", CALL, 150)
    desk.place("SELL", FUT, 300)
    settle(orch)
    assert desk.positions(CALL) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}
    assert desk.positions(FUT) == {"C1": -150, "C2": -600, "C3": 0, "C4": -150, "C5": -150}
    assert sent("C2") == [("BUY", CALL, 300), ("SELL", FUT, 600)]
    assert sent("C5") == [("BUY", CALL, 75), ("SELL", FUT, 150)]
    assert [code for code, _ in skipped(desk.children["C3"], CALL)] == ["below_one_unit"]


def test_money_mutants_allocator_child_limits_other_than_max_lots(desk, orch):
    """Issue 11 mutation proof, §3.3 step 7: allowed instruments, blocked instruments, allowed
    products and max quantity, each on one child of the worked example's entry (master BUY 2 lots)."""
    c = desk.children
    limit(c["C1"], allowed_instruments=["NFO:BANKNIFTY25DECFUT"])
    limit(c["C2"], max_quantity=225)
    limit(c["C4"], blocked_instruments=["NFO:NIFTY25DECFUT"])
    limit(c["C5"], allowed_products=["MIS"])
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    settle(orch)
    assert desk.positions(FUT) == {"C1": 0, "C2": 225, "C3": 0, "C4": 0, "C5": 0}
    assert skipped(c["C1"]) == [
        ("instrument_not_allowed", "NFO:NIFTY25DECFUT is not in this child's allowed instruments")
    ]
    assert skipped(c["C4"]) == [("instrument_blocked", "NFO:NIFTY25DECFUT is blocked for this child")]
    assert skipped(c["C5"]) == [("product_not_allowed", "product NRML is not allowed for this child")]
    c2 = OrderMapping.objects.get(child=c["C2"])
    assert (c2.lots, c2.quantity, c2.reason_code) == (3, 225, "max_quantity")
    assert c2.reason == "reduced by max_quantity"
    # Allowed where it is listed, and limits never stop an exit.
    desk.place("SELL", FUT, 150)
    settle(orch)
    assert desk.positions(FUT) == FLAT


def test_money_mutants_allocator_open_positions_counted_from_engine_holdings(desk, orch):
    """Issue 11 mutation proof, §3.3 step 7: max open positions counts what the engine holds for
    the child: C2 (limit 1) holding calls gets no future, but more of the call it already holds."""
    limit(desk.children["C2"], max_open_positions=1)
    orch.run_tick()
    desk.place("BUY", CALL, 150)
    settle(orch)
    assert desk.positions(CALL)["C2"] == 300
    desk.place("BUY", FUT, 150)
    settle(orch)
    assert desk.positions(FUT) == {"C1": 75, "C2": 0, "C3": 0, "C4": 75, "C5": 75}
    assert skipped(desk.children["C2"]) == [("max_open_positions", "would hold 2 positions, limit 1")]
    desk.place("BUY", CALL, 150)
    settle(orch)
    assert desk.positions(CALL)["C2"] > 300


@pytest.mark.parametrize(("preflight", "c3_short"), [(False, 0), (True, -75)])
def test_money_mutants_allocator_child_margin_preflight(desk, orch, preflight, c3_short):
    """Issue 11 mutation proof, §3.3 step 4: with preflight on, a child's own basket margin sizes
    it. C3 (target 75,000 of the master's 3,00,000 short) holds a call of its own: one short future
    costs it 45,000 after the hedge benefit, so it gets a lot; by the master's 1,50,000 a lot, none."""
    desk.place("BUY", CALL, 75, user="C3")  # C3's own trade: the engine never exits it
    with override_settings(CHILD_MARGIN_PREFLIGHT=preflight):
        orch.run_tick()
        desk.place("SELL", FUT, 150)
        settle(orch)
    assert desk.positions(FUT) == {"C1": -75, "C2": -300, "C3": c3_short, "C4": -75, "C5": -75}
    assert desk.positions(CALL)["C3"] == 75


def test_money_mutants_allocator_entry_awaiting_approval_withdrawn_when_master_flat(desk, orch):
    """Issue 11 mutation proof, §3.4: an entry still waiting (approval) when the master goes flat is
    withdrawn with its reason and never sent, even if staff approve it afterwards."""
    engine_control_update(actor="ops", approval_mode=True)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4
    desk.place("SELL", FUT, 150)
    settle(orch)
    entries = OrderMapping.objects.filter(allocation__kind="open", quantity__gt=0)
    assert set(entries.values_list("status", "reason_code", "reason")) == {
        (MappingStatus.CANCELLED, "master_flat", "master went flat before it was sent")
    }
    assert all(m.finished_at is not None for m in entries)
    audit = ReplicationEvent.objects.filter(kind="intent_withdrawn").order_by("mapping_id")
    assert [(e.account_id, e.message) for e in audit] == [
        (m.child_id, f"{m.tag} withdrawn: master went flat") for m in entries.order_by("id")
    ]
    held = Allocation.objects.get(kind="open", status=AllocationStatus.AWAITING_APPROVAL)
    allocation_approve(allocation=held, actor="staff")
    settle(orch)
    assert not PaperOrder.objects.exclude(account__user_id="MASTER").exists()
    assert desk.positions(FUT) == FLAT


def test_money_mutants_allocator_exit_that_rounds_to_zero_is_recorded(desk, orch):
    """Issue 11 mutation proof, §3.4: the master (5 lots) sells 1 (r = 0.2): C2 (10 lots) sells 2,
    C5 (3 lots) sells 1 (0.6 rounds up), while C1 and C4 (2 lots: 0.4) and C3 (1 lot: 0.2) send
    nothing and are recorded as rounding to zero; at flat everyone exits everything."""
    orch.run_tick()
    desk.place("BUY", FUT, 375)
    settle(orch)
    assert desk.positions(FUT) == {"C1": 150, "C2": 750, "C3": 75, "C4": 150, "C5": 225}
    desk.place("SELL", FUT, 75)
    settle(orch)
    assert desk.positions(FUT) == {"C1": 150, "C2": 600, "C3": 75, "C4": 150, "C5": 150}
    c = desk.children
    assert skipped(c["C1"]) == [("below_one_unit", "the exit ratio of 2 lots rounds to zero")]
    assert skipped(c["C3"]) == [("below_one_unit", "the exit ratio of 1 lots rounds to zero")]
    assert skipped(c["C2"]) == []
    desk.place("SELL", FUT, 300)
    settle(orch)
    assert desk.positions(FUT) == FLAT


def test_money_mutants_allocator_owed_exit_split_at_the_ltp(desk, orch, faults):
    """Issue 11 mutation proof, §3.7 (no order above a child's caps): an owed exit has no master
    order to price it, so its order value is judged at the LTP. C2 (4 lots, max ₹35 lakh an order,
    set after its entry) has half its exit rejected; by then NIFTY is at 25,000, so the owed 2 lots
    (₹37.5 lakh) go as two orders of 1 lot, not as one order priced at the old fills (₹30 lakh)."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    settle(orch)
    limit(desk.children["C2"], max_order_value=Decimal("3500000"))
    faults.reject_after_accept.add("C2")
    desk.place("SELL", FUT, 150)  # master flat: C2 sells 2 × 150, the first is rejected
    orch.run_tick()
    set_price(FUT, "25000")
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 4)
    assert desk.positions(FUT) == FLAT
    sells = PaperOrder.objects.filter(account__user_id="C2", side="SELL").order_by("id")
    assert list(sells.values_list("quantity", "status")) == [
        (150, "REJECTED"),
        (150, "COMPLETE"),
        (75, "COMPLETE"),
        (75, "COMPLETE"),
    ]
