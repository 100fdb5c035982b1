"""Issue 11 defect 10: flatten and corrective orders are sliced at the freeze quantity.

A client large enough to hold more than one freeze quantity must still be flattened (the emergency
exit) and corrected: each closing or corrective order goes to the broker as whole-lot slices no
larger than the instrument's freeze quantity, one tagged intent per slice.
"""

from __future__ import annotations

import pytest

from brokers.paper.models import PaperInstrument, PaperOrder
from replication.allocation import make_tag
from replication.models import MappingStatus, OrderMapping
from replication.services import child_flatten, correction_plan, flatten_plan, reconciliation_correct
from tests.dashboard_helpers import FUT, close_by_hand, replicate_entry

pytestmark = pytest.mark.django_db


def _freeze(quantity: int | None) -> None:
    PaperInstrument.objects.filter(exchange="NFO", tradingsymbol=FUT).update(freeze_quantity=quantity)


def _child_orders(user: str, side: str) -> list[tuple[int, str]]:
    return list(
        PaperOrder.objects.filter(account__user_id=user, tradingsymbol=FUT, side=side)
        .order_by("placed_at", "id")
        .values_list("quantity", "status")
    )


def test_flatten_of_a_position_above_the_freeze_quantity_goes_out_in_slices(desk, orch):
    """Issue 11 defect 10: C2 holds 300 of a future whose freeze quantity is 150 (2 lots); the
    flatten sends two SELL 150 slices and the child ends flat (one SELL 300 was rejected)."""
    _freeze(150)
    replicate_entry(desk, orch)  # master 150 → C2 BUY 300, itself sliced 150 + 150
    c2 = desk.children["C2"]
    assert desk.positions(FUT)["C2"] == 300

    plan = flatten_plan(child=c2)
    (leg,) = plan.orders
    assert (leg.side, leg.quantity, leg.slices, leg.freeze_quantity) == ("SELL", 300, (150, 150), 150)

    created = child_flatten(child=c2, actor="ops", reason="client asked to exit")

    assert [(m.slice_no, m.quantity, m.lots) for m in created] == [(0, 150, 2), (1, 150, 2)]
    alloc = created[0].allocation
    assert {m.allocation_id for m in created} == {alloc.pk}
    assert [m.tag for m in created] == [make_tag(alloc.pk, c2.pk, 0), make_tag(alloc.pk, c2.pk, 1)]
    assert alloc.freeze_quantity == 150

    orch.run_tick()
    orch.run_tick()

    assert _child_orders("C2", "SELL") == [(150, "COMPLETE"), (150, "COMPLETE")]
    assert desk.positions(FUT)["C2"] == 0
    statuses = OrderMapping.objects.filter(pk__in=[m.pk for m in created]).values_list("status", flat=True)
    assert set(statuses) == {MappingStatus.FILLED}


def test_flatten_slices_at_todays_freeze_quantity_not_the_one_recorded_at_entry(desk, orch):
    """Issue 11 defect 10: the exchange lowered the freeze quantity after the entry (recorded
    1800); the flatten reads the instrument's current figure (150) and slices at it."""
    replicate_entry(desk, orch)  # C2 BUY 300 in one order (freeze 1800)
    _freeze(150)
    c2 = desk.children["C2"]

    created = child_flatten(child=c2, actor="ops", reason="risk")
    orch.run_tick()
    orch.run_tick()

    assert [m.quantity for m in created] == [150, 150]
    assert _child_orders("C2", "SELL") == [(150, "COMPLETE"), (150, "COMPLETE")]
    assert desk.positions(FUT)["C2"] == 0


def test_corrective_order_above_the_freeze_quantity_goes_out_in_slices(desk, orch):
    """Issue 11 defect 10: C2 sold its 300 by hand (two orders of 150); the corrective BUY 300 is
    planned and sent as two slices of 150 under one allocation, and the drift clears."""
    _freeze(150)
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 150)
    close_by_hand("C2", 150)

    plan = correction_plan(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML")
    assert (plan.side, plan.quantity, plan.slices) == ("BUY", 300, (150, 150))

    first = reconciliation_correct(
        child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="ops", confirmed_quantity=300
    )
    slices = list(OrderMapping.objects.filter(allocation=first.allocation).order_by("slice_no"))
    assert [(m.slice_no, m.quantity, m.tag) for m in slices] == [
        (0, 150, make_tag(first.allocation_id, c2.pk, 0)),
        (1, 150, make_tag(first.allocation_id, c2.pk, 1)),
    ]

    orch.run_tick()
    orch.run_tick()

    buys = _child_orders("C2", "BUY")
    assert buys[-2:] == [(150, "COMPLETE"), (150, "COMPLETE")]
    assert desk.positions(FUT)["C2"] == 300
