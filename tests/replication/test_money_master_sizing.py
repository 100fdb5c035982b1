"""Issue 11, master side of sizing: first look, precision, the reference price for order-value caps.

Driven through `Orchestrator.run_tick()` on the paper desk of DESIGN §3.6; the assertions are on
what reaches the child brokers (`PaperOrder`), plus pure properties of `replication.sizing`.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.models import Account, CapitalMode, Role
from brokers.paper.models import PaperAccount, PaperOrder
from replication.models import Allocation, MarginSnapshot, OrderMapping
from replication.sizing import ChildProfile, Leg, plan_group, size_entry
from tests.engine_helpers import CALL, FUT

D = Decimal


def _child_orders(symbol: str = FUT) -> dict[str, int]:
    """Quantity each child account was sent in `symbol` (every order that reached its broker)."""
    out: dict[str, int] = {}
    for user_id, qty in (
        PaperOrder.objects.filter(tradingsymbol=symbol)
        .exclude(account__user_id="MASTER")
        .values_list("account__user_id", "quantity")
    ):
        out[user_id] = out.get(user_id, 0) + qty
    return out


def _add_child(name: str, cash: Decimal) -> Account:
    PaperAccount.objects.create(user_id=name, cash=cash)
    return Account.objects.create(
        broker="paper",
        broker_user_id=name,
        role=Role.CHILD,
        display_name=name,
        capital_mode=CapitalMode.TOTAL,
        multiplier=D("1"),
        consent_given_at=timezone.now(),
        consent_version="test",
    )


@pytest.mark.django_db
def test_money_first_look_sizes_from_the_funds_just_read(desk, orch):
    """Issue 11 defect 1: with no earlier master snapshot, master capital is U + A just read
    (₹10,00,000), not the used margin alone (fraction 1.0, every child all-in)."""
    desk.place("BUY", FUT, 150)  # no idle tick first: the engine's first look already sees it
    orch.run_tick()
    assert _child_orders() == {"C1": 75, "C2": 300, "C4": 75, "C5": 75}  # C3: below one lot
    alloc = Allocation.objects.get()
    assert alloc.master_capital == D("1000000")


@pytest.mark.django_db
def test_money_child_with_twice_the_capital_gets_twice_the_lots(desk, orch):
    """Issue 11 defect 2: a master whose capital is not a round number (after a round trip) and a
    child with exactly twice it: the child gets exactly twice the master's lots (4, not 3)."""
    PaperAccount.objects.filter(user_id="MASTER").update(cash=D("1000003.37"))
    _add_child("TWICE", D("2000006.74"))
    orch.run_tick()  # baseline snapshot of the master
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    assert _child_orders()["TWICE"] == 300
    # the unrounded target is what was stored (₹6,00,000 exactly, not a hair below it)
    m = OrderMapping.objects.get(child__broker_user_id="TWICE")
    assert m.target_margin is not None and m.target_margin >= D("600000")


def test_money_worked_example_precision_twice_the_capital():
    """Issue 11 defect 2: worked example. Master capital ₹10,00,003.38 buys 2 lots (ΔU ₹3,00,000);
    a child with ₹20,00,006.76 gets 4 lots. The old code multiplied the fraction 3,00,000 / C, a
    quotient cut at 28 digits, by the child's capital: ₹5,99,999.99… → 3 lots."""
    leg = Leg(
        "NFO", FUT, "NRML", "BUY", master_lots=2, lot_size=75, price=D("20000"), order_margin=D("300000")
    )
    plan = plan_group(legs=[leg], master_capital=D("1000003.38"), delta_u=D("300000"))
    child = ChildProfile(1, used=D("0"), available=D("2000006.76"))
    entry = size_entry(plan, child)
    assert entry.units == 4 and entry.orders[0].quantity == 300
    assert entry.target_margin == D("600000")


money_st = st.decimals(min_value=D("1000"), max_value=D("100000000"), places=2)


@settings(max_examples=300, deadline=None)
@given(
    master_capital=money_st,
    k=st.integers(min_value=1, max_value=20),
    master_lots=st.integers(min_value=1, max_value=20),
    delta_u_share=st.decimals(min_value=D("0.0001"), max_value=D("1"), places=4),
    used_share=st.decimals(min_value=D("0"), max_value=D("1"), places=2),
)
def test_money_exact_multiple_of_master_capital_gets_exact_multiple_of_units(
    master_capital, k, master_lots, delta_u_share, used_share
):
    """Issue 11 defect 2: a child whose capital is exactly k × the master's gets exactly k × the
    master's units (multiplier 1, enough available margin), whatever the figures' digits."""
    delta_u = (master_capital * delta_u_share).quantize(D("0.01"))
    if delta_u <= 0:
        return
    leg = Leg("NFO", FUT, "NRML", "BUY", master_lots, 75, D("20000"), order_margin=delta_u)
    plan = plan_group(legs=[leg], master_capital=master_capital, delta_u=delta_u)
    child_capital = master_capital * k
    used = (child_capital * used_share).quantize(D("0.01"))
    child = ChildProfile(1, used=used, available=child_capital - used)
    if child.available is not None and child.available < delta_u * k:
        return  # the available-margin cap would bite: not this property
    entry = size_entry(plan, child)
    assert entry.units == k * master_lots


@pytest.mark.parametrize(
    ("master_lots", "delta_u", "master_capital", "child", "units"),
    [
        # capped by available margin: ₹2,00,000 buys exactly 3 units of ₹66,666.66…
        (3, "200000", "1000000", ChildProfile(1, used=D("5000000"), available=D("200000")), 3),
        # the child's own margin per unit (preflight): a target of exactly ₹6,00,000 at ₹1,50,000
        (
            2,
            "300000",
            "1000003.38",
            ChildProfile(1, used=D("0"), available=D("2000006.76"), margin_per_unit=D("150000")),
            4,
        ),
    ],
    ids=["available-cap", "child-preflight"],
)
def test_money_exact_units_on_the_cap_and_preflight_paths(master_lots, delta_u, master_capital, child, units):
    """Issue 11 defect 2: the available-margin cap (floor(A × master units / ΔU)) and the child's
    preflight margin per unit are floored once, exactly: a whole quotient is never one less."""
    leg = Leg("NFO", FUT, "NRML", "BUY", master_lots, 75, D("20000"), order_margin=D(delta_u))
    plan = plan_group(legs=[leg], master_capital=D(master_capital), delta_u=D(delta_u))
    assert size_entry(plan, child).units == units


@pytest.mark.django_db
def test_money_allocation_carries_the_reference_price(desk, orch):
    """Issue 11 defect 5 (master side): the allocation carries the price the order-value cap is
    priced at: the LTP read for the event for a MARKET order, the order's price for a LIMIT."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    desk.place("BUY", CALL, 150, order_type="LIMIT", price=D("190"))
    orch.run_tick()
    prices = dict(Allocation.objects.values_list("tradingsymbol", "reference_price"))
    assert prices == {FUT: D("20000"), CALL: D("190")}


@pytest.mark.django_db
def test_money_snapshot_from_long_before_is_no_before(desk, orch):
    """Issue 11 defect 1: a master snapshot from long before the tick (a new master's from its
    time as a child, the engine back after a gap) is not taken as the capital before the event:
    the funds just read are (₹10,00,000), so C2 gets 4 lots, not 8."""
    orch.run_tick()
    MarginSnapshot.objects.filter(account=desk.master).update(
        used_margin=D("100000"),
        available_margin=D("400000"),
        capital=D("500000"),
        taken_at=timezone.now() - timedelta(hours=3),
    )
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    assert _child_orders() == {"C1": 75, "C2": 300, "C4": 75, "C5": 75}
