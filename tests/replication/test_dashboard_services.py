"""Corrective orders and flattening: the intents they plan, their audit rows, and the next tick."""

from __future__ import annotations

import pytest

from accounts.models import AccountStatus
from replication.allocation import CORRECTIVE, replicated_positions
from replication.controls import engine_control_update
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    MappingStatus,
    OrderMapping,
    ReplicationEvent,
)
from replication.reconciliation import Grade, reconcile
from replication.services import (
    CorrectionError,
    child_flatten,
    correction_plan,
    flatten_plan,
    reconciliation_correct,
)
from tests.dashboard_helpers import FUT, build_desk, close_by_hand, orchestrator, replicate_entry
from tests.engine_helpers import CALL

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk():
    return build_desk()


@pytest.fixture
def orch():
    with orchestrator() as o:
        yield o


def _grade(child, symbol=FUT):
    return next(d.grade for d in reconcile(children=[child]) if d.tradingsymbol == symbol)


def test_correction_plan_buys_back_what_the_child_sold_by_hand(desk, orch):
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 300)

    plan = correction_plan(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML")

    assert (plan.expected, plan.actual) == (300, 0)
    assert (plan.side, plan.quantity, plan.lot_size, plan.lots) == ("BUY", 300, 75, 4)
    assert plan.signed_quantity == 300
    assert not OrderMapping.objects.filter(allocation__margin_source=CORRECTIVE).exists()


def test_reconciliation_correct_plans_one_audited_intent_and_the_next_tick_clears_the_drift(desk, orch):
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 300)
    assert _grade(c2) == Grade.MAJOR

    mapping = reconciliation_correct(
        child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="alice", confirmed_quantity=300
    )

    assert mapping.status == MappingStatus.PLANNED
    assert (mapping.side, mapping.quantity, mapping.lots, mapping.child_id) == ("BUY", 300, 4, c2.pk)
    alloc = mapping.allocation
    assert alloc.sized and alloc.status == AllocationStatus.PLANNED
    assert alloc.kind == AllocationKind.OPEN and alloc.margin_source == CORRECTIVE
    assert alloc.master == desk.master and alloc.master_quantity == 300
    assert "corrective order by alice" in alloc.reason
    event = ReplicationEvent.objects.get(kind="corrective_order_planned")
    assert (event.actor, event.account_id, event.mapping_id) == ("alice", c2.pk, mapping.pk)
    assert event.data == {"expected": 300, "actual": 0, "side": "BUY", "quantity": 300, "dry_run": False}

    result = orch.run_tick()

    assert result.dispatch.sent == 1
    assert desk.positions(FUT)["C2"] == 300
    assert _grade(c2) == Grade.OK
    orch.run_tick()  # follow-up: the fill is recorded
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.FILLED and mapping.filled_quantity == 300
    assert _grade(c2) == Grade.OK
    # The correction is not part of the replicated position: a later full exit sells 300, not 600.
    held = replicated_positions(children=[c2.pk])
    assert held[(c2.pk, "NFO", FUT, "NRML")][0] == 300


def test_reconciliation_correct_sells_what_the_child_added_by_hand(desk, orch):
    replicate_entry(desk, orch)
    c1 = desk.children["C1"]
    close_by_hand("C1", 75, side="BUY")  # C1 now holds 150, the engine placed 75
    assert _grade(c1) == Grade.MINOR

    mapping = reconciliation_correct(child=c1, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="bob")
    orch.run_tick()

    mapping.refresh_from_db()
    assert (mapping.side, mapping.quantity, mapping.allocation.kind) == ("SELL", 75, AllocationKind.CLOSE)
    assert desk.positions(FUT)["C1"] == 75
    assert _grade(c1) == Grade.OK


def test_reconciliation_correct_refuses_a_stale_confirmation_and_a_second_click(desk, orch):
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 150)  # drift is now 150

    with pytest.raises(CorrectionError, match="changed since the confirmation page"):
        reconciliation_correct(
            child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="a", confirmed_quantity=300
        )
    assert not OrderMapping.objects.filter(allocation__margin_source=CORRECTIVE).exists()

    reconciliation_correct(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="a")
    with pytest.raises(CorrectionError, match="still working"):
        reconciliation_correct(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="a")
    assert OrderMapping.objects.filter(allocation__margin_source=CORRECTIVE).count() == 1


def test_reconciliation_correct_refuses_without_drift_or_for_a_halted_child(desk, orch):
    replicate_entry(desk, orch)
    c4 = desk.children["C4"]
    with pytest.raises(CorrectionError, match="no drift"):
        correction_plan(child=c4, exchange="NFO", tradingsymbol=FUT, product="NRML")

    close_by_hand("C4", 75)
    c4.status = AccountStatus.HALTED
    c4.save(update_fields=["status"])
    with pytest.raises(CorrectionError, match="halted"):
        reconciliation_correct(child=c4, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="a")
    assert not ReplicationEvent.objects.filter(kind="corrective_order_planned").exists()


def test_reconciliation_correct_under_dry_run_records_without_sending(desk, orch):
    replicate_entry(desk, orch)
    close_by_hand("C5", 75)
    engine_control_update(actor="ops", dry_run=True)

    mapping = reconciliation_correct(
        child=desk.children["C5"], exchange="NFO", tradingsymbol=FUT, product="NRML", actor="a"
    )
    orch.run_tick()

    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.DRY_RUN
    assert desk.positions(FUT)["C5"] == 0


def test_child_flatten_closes_every_replicated_instrument_and_the_next_tick_sends_it(desk, orch):
    orch.run_tick()
    desk.place("BUY", CALL, 150)
    desk.place("SELL", FUT, 150)  # the hedge of §3.6: C2 long 300 calls, short 300 futures
    orch.run_tick()
    orch.run_tick()
    c2 = desk.children["C2"]
    assert desk.positions(FUT)["C2"] == -300 and desk.positions(CALL)["C2"] == 300

    plan = flatten_plan(child=c2)
    assert {(leg.tradingsymbol, leg.side, leg.quantity) for leg in plan.orders} == {
        (FUT, "BUY", 300),
        (CALL, "SELL", 300),
    }

    created = child_flatten(child=c2, actor="carol", reason="client asked to exit")

    assert {(m.tradingsymbol, m.side, m.quantity, m.status) for m in created} == {
        (FUT, "BUY", 300, MappingStatus.PLANNED),
        (CALL, "SELL", 300, MappingStatus.PLANNED),
    }
    sell = next(m for m in created if m.side == "SELL")
    assert sell.wave == 1  # the short future is bought back before the long call is sold
    allocations = Allocation.objects.filter(pk__in=[m.allocation_id for m in created])
    assert {a.kind for a in allocations} == {AllocationKind.CLOSE}
    assert len({a.group_key for a in allocations}) == 1
    event = ReplicationEvent.objects.get(kind="child_flattened")
    assert event.actor == "carol" and event.account_id == c2.pk
    assert "client asked to exit" in event.message

    orch.run_tick()
    orch.run_tick()

    assert desk.positions(FUT)["C2"] == 0 and desk.positions(CALL)["C2"] == 0
    assert all(d.grade == Grade.OK and d.expected == 0 for d in reconcile(children=[c2]))
    assert desk.positions(FUT)["C1"] == -75  # nobody else moved


def test_child_flatten_never_turns_a_position_around(desk, orch):
    replicate_entry(desk, orch)
    c1 = desk.children["C1"]
    close_by_hand("C1", 75)  # already flat at the broker

    assert flatten_plan(child=c1).orders == ()
    with pytest.raises(CorrectionError, match="nothing to flatten"):
        child_flatten(child=c1, actor="a", reason="exit")
    with pytest.raises(CorrectionError, match="reason is required"):
        child_flatten(child=desk.children["C2"], actor="a", reason="  ")
    assert not ReplicationEvent.objects.filter(kind="child_flattened").exists()


def test_child_flatten_withdraws_entries_not_yet_sent(desk, orch):
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    planned_entry = OrderMapping.objects.create(  # an entry intent the engine has not sent yet
        allocation=Allocation.objects.get(kind=AllocationKind.OPEN),
        child=c2,
        slice_no=9,
        tag="TESTENTRYC2",
        exchange="NFO",
        tradingsymbol=FUT,
        product="NRML",
        side="BUY",
        quantity=75,
        lots=1,
    )

    created = child_flatten(child=c2, actor="a", reason="exit")

    assert [(m.side, m.quantity) for m in created] == [("SELL", 300)]
    planned_entry.refresh_from_db()
    assert planned_entry.status == MappingStatus.CANCELLED
    assert planned_entry.reason_code == "flattened"
    assert ReplicationEvent.objects.get(kind="child_flattened").data["withdrawn_entries"] == 1
