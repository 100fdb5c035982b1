"""Issue 11 mutation proof: replication/allocation/ (allocations turned into child intents).

Each test kills mutants of the allocator that survived the engine tests (docs/mutation.md lists
them by name): it drives `Orchestrator.run_tick()` (or a staff service) on the paper desk of
DESIGN §3.6 and asserts what a user sees: what reached the children's broker, the intents'
statuses and reasons, the entitlement rows and the audit rows.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import AccountStatus
from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument, PaperOrder
from brokers.paper.services import paper_order_place
from lab.demo import PUT, _instrument
from replication import failpoints
from replication.controls import engine_control_update
from replication.failpoints import FailpointTriggered
from replication.models import (
    Allocation,
    AllocationKind,
    Entitlement,
    MappingStatus,
    MarginSnapshot,
    OrchestratorLease,
    OrderMapping,
    ReplicationEvent,
)
from replication.orchestrator import Orchestrator
from replication.services import child_flatten
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


def entry(desk, orch, symbol: str = FUT) -> None:
    """The worked example's first step: the master buys 2 lots and the children follow."""
    orch.run_tick()
    desk.place("BUY", symbol, 150)
    settle(orch)
    assert desk.positions(symbol) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}


def test_money_mutants_allocation_sized_audit_and_tick_count(desk, orch):
    """Issue 11 proof: mutation of create_intents (audit kind, audit account, the count of
    intents the tick reports). The worked example's entry makes 4 planned intents and 1 skipped:
    the tick says 4, and the master's allocation has one `allocation_sized` row with the counts."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    result = orch.run_tick()
    assert result.intents == 4
    alloc = Allocation.objects.get(kind=AllocationKind.OPEN)
    audit = ReplicationEvent.objects.filter(allocation=alloc, kind="allocation_sized")
    assert [(e.account_id, e.data) for e in audit] == [
        (desk.master.pk, {MappingStatus.PLANNED: 4, MappingStatus.SKIPPED: 1})
    ]
    assert audit[0].message == f"child intents for allocation {alloc.pk}: 4 planned, 1 skipped"


def test_money_mutants_allocation_skip_row_keeps_capital_and_target(desk, orch):
    """Issue 11 proof: mutation of entry_mappings (a skipped child's capital). C3 (₹2,50,000,
    target ₹75,000) cannot afford a lot: its skipped intent shows the capital and target it was
    sized from, which staff read to see why."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    c3 = OrderMapping.objects.get(child=desk.children["C3"])
    assert (c3.status, c3.reason_code) == (MappingStatus.SKIPPED, "below_one_unit")
    assert c3.capital == Decimal("250000.00")
    assert c3.target_margin == Decimal("75000")


def test_money_mutants_allocation_dry_run_entry_says_not_sent(desk, orch):
    """Issue 11 proof: mutation of entry_mappings (the dry-run reason). A dry-run child's entry
    is recorded as DRY_RUN with the reason "dry run: not sent" and nothing reaches its broker."""
    limit(desk.children["C2"], dry_run=True)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    settle(orch, 2)
    c2 = OrderMapping.objects.get(child=desk.children["C2"])
    assert (c2.status, c2.quantity, c2.reason_code, c2.reason) == (
        MappingStatus.DRY_RUN,
        300,
        "",
        "dry run: not sent",
    )
    assert sent("C2") == []


def test_money_mutants_allocation_sizing_error_is_recorded_per_child(desk, orch):
    """Issue 11 proof: mutation of entry_rows (the child of a sizing_error row). With the
    exchange freeze quantity below one lot, no child's order can be sliced: each affordable
    child gets a SKIPPED intent `sizing_error` with the reason, the tick goes on, nothing is sent."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    PaperInstrument.objects.filter(tradingsymbol=FUT).update(freeze_quantity=70)
    orch.instruments.invalidate()  # the idle tick read the day's list: the engine reads the new one
    settle(orch, 2)
    rows = OrderMapping.objects.filter(tradingsymbol=FUT).order_by("child_id")
    assert {(m.child.broker_user_id, m.status, m.reason_code) for m in rows} == {
        ("C1", MappingStatus.SKIPPED, "sizing_error"),
        ("C2", MappingStatus.SKIPPED, "sizing_error"),
        ("C3", MappingStatus.SKIPPED, "below_one_unit"),
        ("C4", MappingStatus.SKIPPED, "sizing_error"),
        ("C5", MappingStatus.SKIPPED, "sizing_error"),
    }
    c1 = rows.get(child=desk.children["C1"])
    assert c1.reason == "could not be sized: freeze quantity 70 is below one lot of 75"
    assert not PaperOrder.objects.exclude(account__user_id="MASTER").exists()


def test_money_mutants_allocation_stale_snapshot_read_finds_token_dead(desk, orch, faults):
    """Issue 11 proof: mutation of entry_rows (the status a stale-snapshot read found). C1's
    margin snapshot is stale, and reading its funds finds the session dead: C1 moves to
    NEEDS_LOGIN and its entry is SKIPPED `needs_login` at sizing (not planned and held later)."""
    orch.run_tick()
    faults.token_expired.add("C1")
    desk.place("BUY", FUT, 150)
    with override_settings(CHILD_SNAPSHOT_MAX_AGE=0):
        orch.run_tick()
    c1 = desk.children["C1"]
    c1.refresh_from_db()
    assert c1.status == AccountStatus.NEEDS_LOGIN
    m = OrderMapping.objects.get(child=c1)
    assert (m.status, m.reason_code, m.quantity) == (MappingStatus.SKIPPED, "needs_login", 0)
    assert sent("C1") == []
    assert desk.positions(FUT)["C2"] == 300


def test_money_mutants_allocation_open_entries_cancelled_when_two_instruments_go_flat(desk, orch):
    """Issue 11 proof: mutations of prepare_exits (the instruments' filter joined with `&`, the
    open entries to cancel). The children hold futures and calls, and C2 has resting LIMIT
    entries in both; the master goes flat in both in one tick: C2's resting entries are cancelled
    at its broker in that tick (a late fill must not leave the child holding)."""
    entry(desk, orch, FUT)
    desk.place("BUY", CALL, 150)
    settle(orch)
    desk.place("BUY", FUT, 75, order_type="LIMIT", price=Decimal("19000"))
    desk.place("BUY", CALL, 75, order_type="LIMIT", price=Decimal("100"))
    settle(orch, 2)
    resting = PaperOrder.objects.exclude(account__user_id="MASTER").filter(order_type="LIMIT")
    assert sorted(resting.values_list("account__user_id", "instrument__tradingsymbol", "status")) == [
        ("C2", CALL, "OPEN"),
        ("C2", FUT, "OPEN"),
    ]
    desk.place("SELL", FUT, 150)
    desk.place("SELL", CALL, 150)
    orch.run_tick()
    assert set(resting.values_list("status", flat=True)) == {"CANCELLED"}
    settle(orch)
    assert desk.positions(FUT) == FLAT
    assert desk.positions(CALL) == FLAT


def test_money_mutants_allocation_withdrawn_intent_audit_names_its_allocation(desk, orch):
    """Issue 11 proof: mutation of prepare_exits (the withdrawn intent's audit row). An entry
    awaiting approval when the master goes flat is withdrawn; each audit row names the child,
    the allocation and the intent."""
    engine_control_update(actor="ops", approval_mode=True)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    desk.place("SELL", FUT, 150)
    settle(orch, 2)
    entries = OrderMapping.objects.filter(allocation__kind="open", quantity__gt=0).order_by("id")
    assert entries.count() == 4
    audit = ReplicationEvent.objects.filter(kind="intent_withdrawn").order_by("mapping_id")
    assert [(e.account_id, e.allocation_id, e.mapping_id) for e in audit] == [
        (m.child_id, m.allocation_id, m.pk) for m in entries
    ]


def test_money_mutants_allocation_settled_entitlement_followed_again_at_next_exit(desk, orch, faults):
    """Issue 11 proof: mutation of _key_q (the instrument filter that marks entitlements
    unsettled). After a partial exit the entitlement rows converge and settle; at the next exit
    C2's order is rejected: its row is unsettled again, so the owed exit is sent and C2 ends flat."""
    entry(desk, orch)
    desk.place("SELL", FUT, 75)  # r = 1/2
    settle(orch)
    assert desk.positions(FUT) == {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}
    c2_row = Entitlement.objects.get(child=desk.children["C2"], tradingsymbol=FUT)
    assert (c2_row.settled, c2_row.quantity) == (True, 150)
    faults.reject_after_accept.add("C2")
    desk.place("SELL", FUT, 75)  # master flat: C2's exit is rejected
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 4)
    assert desk.positions(FUT) == FLAT
    sells = PaperOrder.objects.filter(account__user_id="C2", side="SELL").order_by("id")
    assert list(sells.values_list("quantity", "status")) == [
        (150, "COMPLETE"),
        (150, "REJECTED"),
        (150, "COMPLETE"),
    ]


def test_money_mutants_allocation_flatten_leaves_a_working_exit_alone(desk, orch):
    """Issue 11 proof: mutation of replicated_positions (the pending quantity per side). C2 holds
    4 lots and its mirror of the master's resting LIMIT sell (2 lots) is working: a staff flatten
    closes only the other 2 lots, never more than C2 holds. The flatten entitles C2 to nothing, so
    the 2 lots its mirror would close (only if the master's LIMIT fills) are owed now, at MARKET,
    and the mirror is cancelled in the same tick: C2 is flat and never short."""
    entry(desk, orch)
    desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("21000"))
    settle(orch, 2)
    assert sent("C2") == [("BUY", FUT, 300), ("SELL", FUT, 150)]
    planned = child_flatten(child=desk.children["C2"], actor="carol", reason="client asked to exit")
    assert [(m.side, m.quantity) for m in planned] == [("SELL", 150)]
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 0
    assert not PaperOrder.objects.filter(account__user_id="C2", status="OPEN").exists()
    settle(orch, 2)
    assert desk.positions(FUT)["C2"] == 0


def test_money_mutants_allocation_exit_intents_and_held_back_exit_reasons(desk, orch):
    """Issue 11 proof: mutations of exit_rows (an exit intent's reason code, a held-back exit's
    reason). At the master's exit C4 is halted: its exit is SKIPPED with the reason it stays owed;
    the others' exits carry no reason code. Once C4 is resumed its owed exit goes out."""
    entry(desk, orch)
    c4 = desk.children["C4"]
    limit(c4, status=AccountStatus.HALTED)
    desk.place("SELL", FUT, 150)
    orch.run_tick()
    exits = OrderMapping.objects.filter(allocation__kind=AllocationKind.CLOSE).exclude(child=c4)
    assert exits.count() == 3 and set(exits.values_list("reason_code", "reason")) == {("", "")}
    held = OrderMapping.objects.get(allocation__kind=AllocationKind.CLOSE, child=c4)
    assert (held.status, held.reason_code) == (MappingStatus.SKIPPED, "child_halted")
    assert held.reason == (
        "exit of 75 held back: child halted: nothing is sent; it stays owed until the child can trade"
    )
    assert desk.positions(FUT) == {"C1": 0, "C2": 0, "C3": 0, "C4": 75, "C5": 0}
    limit(c4, status=AccountStatus.ACTIVE)
    settle(orch)
    assert desk.positions(FUT) == FLAT


def test_money_mutants_allocation_exit_sliced_by_max_lots_per_order(desk, orch):
    """Issue 11 proof: mutation of exit_slices (max lots per order). C2 (4 lots) is limited to
    1 lot an order after its entry: its exit is never reduced, it goes as four orders of 1 lot."""
    entry(desk, orch)
    limit(desk.children["C2"], max_lots_per_order=1)
    desk.place("SELL", FUT, 150)
    settle(orch)
    assert desk.positions(FUT) == FLAT
    assert sent("C2") == [("BUY", FUT, 300)] + [("SELL", FUT, 75)] * 4


def test_money_mutants_allocation_owed_exit_priced_at_last_fill_without_ltp(desk, orch, faults):
    """Issue 11 proof: mutations of exit_price (the last-fill fallback: its instrument, its
    column, the latest fill). C2 bought at ₹20,000 and sold half at ₹25,000; its last exit is
    rejected and stays owed; then C2 gets a cap of ₹35 lakh an order and the master's LTP becomes
    unreadable, so the owed exit's order value is judged at the latest fill (₹25,000): 2 lots are
    ₹37.5 lakh, above the cap, so it goes as two orders of 1 lot (at the first fill's ₹20,000 it
    would be one order)."""
    entry(desk, orch)
    set_price(FUT, "25000")
    desk.place("SELL", FUT, 75)  # C2 sells 2 of its 4 lots, at 25,000
    settle(orch)
    faults.reject_after_accept.add("C2")
    desk.place("SELL", FUT, 75)  # master flat: C2's exit is rejected
    orch.run_tick()
    limit(desk.children["C2"], max_order_value=Decimal("3500000"))
    faults.calculator_down.add("MASTER")
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 4)
    assert desk.positions(FUT) == FLAT
    sells = PaperOrder.objects.filter(account__user_id="C2", side="SELL").order_by("id")
    assert list(sells.values_list("quantity", "status")) == [
        (150, "COMPLETE"),
        (150, "REJECTED"),
        (75, "COMPLETE"),
        (75, "COMPLETE"),
    ]


def stock(side: str, quantity: int) -> None:
    """The master trades ITC shares (NSE, delivery)."""
    paper_order_place(
        user_id="MASTER",
        exchange="NSE",
        tradingsymbol="ITC",
        side=side,
        quantity=quantity,
        product="CNC",
        order_type="MARKET",
    )


def test_money_mutants_allocation_share_exit_rounding_names_shares(desk, orch):
    """Issue 11 proof: mutation of exit_rows (the lot count of an exit that rounds to zero, for
    an instrument of lot size 1). The master buys 100 shares of a stock (f = 0.10) and sells 1
    (r = 1/100): C3's 25 shares round to zero, recorded as "25 lots"; C1's 50 round up to 1."""
    _instrument(
        "ITC", InstrumentType.EQ, "1000", exchange="NSE", segment="NSE", lot=1, freeze=None, token=424961
    )
    orch.run_tick()
    stock("BUY", 100)
    settle(orch)
    assert desk.positions("ITC") == {"C1": 50, "C2": 200, "C3": 25, "C4": 50, "C5": 70}
    stock("SELL", 1)
    settle(orch)
    c3 = desk.children["C3"]
    assert list(
        OrderMapping.objects.filter(child=c3, allocation__kind=AllocationKind.CLOSE).values_list(
            "status", "reason_code", "reason"
        )
    ) == [(MappingStatus.SKIPPED, "below_one_unit", "the exit ratio of 25 lots rounds to zero")]
    assert desk.positions("ITC") == {"C1": 49, "C2": 198, "C3": 25, "C4": 49, "C5": 69}


def test_money_mutants_allocation_no_margin_figure_skips_every_child(desk, orch, faults):
    """Issue 11 proof: mutation of entry_rows (the rows of a group without a margin figure). The
    engine's first look at the master finds an order already placed (no ΔU across a tick) while
    its margin calculator is down: there is nothing to size by, so every child gets a SKIPPED
    intent `no_margin_figure` with the reason, and nothing is sent."""
    faults.calculator_down.add("MASTER")
    desk.place("BUY", FUT, 150)
    settle(orch, 2)
    rows = OrderMapping.objects.filter(tradingsymbol=FUT)
    assert sorted(rows.values_list("child__broker_user_id", "status", "reason_code", "reason")) == [
        (
            name,
            MappingStatus.SKIPPED,
            "no_margin_figure",
            "no margin figure for the master's order (ΔU did not rise and no calculator estimate)",
        )
        for name in ("C1", "C2", "C3", "C4", "C5")
    ]
    assert not PaperOrder.objects.exclude(account__user_id="MASTER").exists()


def test_money_mutants_allocation_fresh_snapshot_is_used_not_read_again(desk, orch):
    """Issue 11 proof: mutation of eligible_children (the latest snapshot's time). A child's margin
    snapshot younger than CHILD_SNAPSHOT_MAX_AGE sizes the next entry without a funds read: C3's
    cash rises after the first entry, and the second entry (moments later, on the stored figures)
    still finds it below one lot and stores no new snapshot for any child."""
    entry(desk, orch)
    children = list(desk.children.values())
    before = MarginSnapshot.objects.filter(account__in=children).count()
    assert before == 5
    PaperAccount.objects.filter(user_id="C3").update(cash=Decimal("5000000"))
    desk.place("BUY", FUT, 150)
    settle(orch, 2)
    assert MarginSnapshot.objects.filter(account__in=children).count() == before
    c3 = OrderMapping.objects.filter(child=desk.children["C3"]).order_by("id")
    assert list(c3.values_list("status", "reason_code")) == [
        (MappingStatus.SKIPPED, "below_one_unit"),
        (MappingStatus.SKIPPED, "below_one_unit"),
    ]


def test_money_mutants_allocation_close_left_unsized_by_a_crash_keeps_its_rounding(desk):
    """Issue 11 proof: mutation of exit_rows (the entitlement before an exit read up to the next
    allocation instead of the one before). The master (5 lots) sells 1 lot in a tick that crashes
    after its other group's intents: that close is left unsized. After the restart the master sells
    another lot, and both closes are sized in one pass: at the first (r = 1/5) C1's 2 lots round to
    zero and that is recorded; at the second (r = 1/4 of the 2 lots still owed) C1 sells 1 lot."""
    first = Orchestrator(holder="A", workers=0)
    try:
        first.run_tick()
        desk.place("BUY", FUT, 375)
        settle(first)
        assert desk.positions(FUT) == {"C1": 150, "C2": 750, "C3": 75, "C4": 150, "C5": 225}
        desk.place("BUY", PUT, 75)
        desk.place("SELL", FUT, 75)
        with failpoints.active({"after_intent_commit": "raise:1"}), pytest.raises(FailpointTriggered):
            first.run_tick()
    finally:
        first.close()
    unsized = Allocation.objects.get(kind=AllocationKind.CLOSE)
    assert not unsized.sized and not unsized.mappings.exists()
    OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    second = Orchestrator(holder="B", workers=0)
    try:
        desk.place("SELL", FUT, 75)
        settle(second)
    finally:
        second.close()
    first_close, second_close = Allocation.objects.filter(kind=AllocationKind.CLOSE).order_by("id")
    assert first_close == unsized and second_close.pk == unsized.pk + 1
    c1 = desk.children["C1"]
    assert list(
        OrderMapping.objects.filter(child=c1, allocation=first_close).values_list("reason_code", "reason")
    ) == [("below_one_unit", "the exit ratio of 2 lots rounds to zero")]
    assert list(
        OrderMapping.objects.filter(child=c1, allocation=second_close).values_list("status", "quantity")
    ) == [(MappingStatus.FILLED, 75)]
    assert desk.positions(FUT) == {"C1": 75, "C2": 450, "C3": 75, "C4": 75, "C5": 75}
