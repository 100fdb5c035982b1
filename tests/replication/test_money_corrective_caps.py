"""Issue 11 defect 5 (corrective part): corrective orders respect the child's caps; flatten does not
reduce exits.

Max lots per order only makes more slices; max quantity and max order value (a MARKET corrective
priced at the child's LTP) cap the total, and the confirmation page says so with the reason.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from brokers.paper.models import PaperOrder
from replication.models import OrderMapping, ReplicationEvent
from replication.services import CorrectionError, child_flatten, correction_plan, reconciliation_correct
from tests.dashboard_helpers import FUT, close_by_hand, replicate_entry
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db

# NIFTY future at ₹20,000, lot 75: one lot is worth ₹15,00,000.


def _limit(child, **caps) -> None:
    for name, value in caps.items():
        setattr(child, name, value)
    child.save(update_fields=list(caps))


def _buys(user: str) -> list[int]:
    return list(
        PaperOrder.objects.filter(account__user_id=user, tradingsymbol=FUT, side="BUY", status="COMPLETE")
        .order_by("placed_at", "id")
        .values_list("quantity", flat=True)
    )


def _correct(desk, orch, child, **kwargs):
    mapping = reconciliation_correct(
        child=child, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="ops", **kwargs
    )
    orch.run_tick()
    orch.run_tick()
    return mapping


def test_corrective_order_is_capped_at_the_childs_max_quantity(desk, orch):
    """Issue 11 defect 5: C2 (max quantity 150) sold its 300 by hand; the corrective BUY is 150,
    not 300, and the plan says which cap bit."""
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 300)
    _limit(c2, max_quantity=150)

    plan = correction_plan(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML")
    assert (plan.drift, plan.quantity, plan.signed_quantity) == (300, 150, 150)
    assert "max quantity 150" in plan.cap_note

    before = _buys("C2")
    mapping = _correct(desk, orch, c2, confirmed_quantity=150)

    assert _buys("C2")[len(before) :] == [150]
    assert desk.positions(FUT)["C2"] == 150
    assert "max quantity 150" in mapping.reason
    assert ReplicationEvent.objects.get(kind="corrective_order_planned").data["capped"]


def test_market_corrective_order_is_capped_at_max_order_value_priced_at_the_ltp(desk, orch):
    """Issue 11 defect 5: C2 capped at ₹40 lakh per order; a BUY 300 at LTP ₹20,000 is ₹60 lakh,
    so the corrective order is 2 lots (₹30 lakh), not 4."""
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 300)
    _limit(c2, max_order_value=Decimal("4000000"))

    plan = correction_plan(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML")
    assert (plan.quantity, plan.price) == (150, Decimal("20000"))
    assert "max order value" in plan.cap_note

    before = _buys("C2")
    _correct(desk, orch, c2, confirmed_quantity=150)

    assert _buys("C2")[len(before) :] == [150]
    assert plan.quantity * plan.price <= Decimal("4000000")


def test_corrective_order_with_max_lots_per_order_goes_in_more_slices_not_less(desk, orch):
    """Issue 11 defect 5: max 1 lot per order splits the corrective BUY 300 into four orders of 75;
    the total is not reduced."""
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 300)
    _limit(c2, max_lots_per_order=1)

    plan = correction_plan(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML")
    assert (plan.quantity, plan.slices, plan.cap_note) == (300, (75, 75, 75, 75), "")

    before = _buys("C2")
    _correct(desk, orch, c2, confirmed_quantity=300)

    assert _buys("C2")[len(before) :] == [75, 75, 75, 75]
    assert desk.positions(FUT)["C2"] == 300


def test_corrective_order_refused_when_a_cap_allows_less_than_one_lot(desk, orch):
    """Issue 11 defect 5: a max order value below one lot's value plans nothing, with the reason."""
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 300)
    _limit(c2, max_order_value=Decimal("1000000"))

    with pytest.raises(CorrectionError, match="max order value"):
        reconciliation_correct(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="ops")
    assert not OrderMapping.objects.filter(allocation__margin_source="corrective").exists()


def test_corrective_order_refused_when_the_ltp_for_the_value_cap_cannot_be_read(desk, orch, faults):
    """Issue 11 defect 5: with a max order value set and the child's LTP unreadable, the order
    value cannot be checked: nothing is planned (fail closed)."""
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 300)
    _limit(c2, max_order_value=Decimal("4000000"))
    faults.calculator_down.add("C2")

    with pytest.raises(CorrectionError, match="LTP"):
        reconciliation_correct(child=c2, exchange="NFO", tradingsymbol=FUT, product="NRML", actor="ops")
    assert not OrderMapping.objects.filter(allocation__margin_source="corrective").exists()


def test_flatten_is_not_reduced_by_caps(desk, orch):
    """Issue 11 defect 5: exits continue (DESIGN §3.3 step 7): a child capped at 1 lot, 75 units and
    ₹1 lakh per order is still flattened completely (sliced only at the freeze quantity)."""
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    _limit(c2, max_lots_per_order=1, max_quantity=75, max_order_value=Decimal("100000"))

    created = child_flatten(child=c2, actor="ops", reason="exit")
    orch.run_tick()
    orch.run_tick()

    assert sum(m.quantity for m in created) == 300
    assert desk.positions(FUT)["C2"] == 0


def test_confirmation_page_shows_the_capped_quantity_and_why(client, desk, orch):
    """Issue 11 defect 5: the corrective confirmation page shows what is sent (150 of the 300
    drift) and the cap that reduced it."""
    replicate_entry(desk, orch)
    c2 = desk.children["C2"]
    close_by_hand("C2", 300)
    _limit(c2, max_quantity=150)
    client.force_login(StaffFactory(username="ops"))

    params = {"child": c2.pk, "exchange": "NFO", "tradingsymbol": FUT, "product": "NRML"}
    page = client.get(reverse("dashboard:correct"), params).content.decode()

    assert '<b id="plan-quantity">150</b>' in page
    assert 'id="plan-cap"' in page and "max quantity 150" in page
