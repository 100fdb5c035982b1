"""The fast batch path equals the readable rules, and the typed plan an allocation stores sizes
every child as the plan it came from (issue 13 item 4; no database)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from replication.models import Allocation
from replication.sizing import (
    Attribution,
    CapitalMode,
    ChildLimits,
    ChildProfile,
    GroupPlan,
    Leg,
    MarginSource,
    group_plan,
    leg_plans,
    plan_group,
    size_entries,
    size_entry,
)

D = Decimal
SYMBOLS = ("SYM0", "SYM1", "SYM2")
paise = st.decimals(min_value=D("0.01"), max_value=D("100000000"), places=2)
signed_paise = st.decimals(min_value=D("-200000"), max_value=D("100000000"), places=2)
# A margin per lot or unit is at least ₹500 here: with paise-sized margins a crore of capital is
# billions of lots, and slicing them at the freeze quantity is a tuple the machine cannot hold.
# (F&O margins per lot are in the thousands; the rules are the same at any size.)
margins = st.decimals(min_value=D("500"), max_value=D("100000000"), places=2)
# The master's capital likewise from ₹1 lakh: a child a billion times the master's size is no desk.
capitals = st.decimals(min_value=D("100000"), max_value=D("100000000"), places=2)


@st.composite
def legs(draw: st.DrawFn) -> list[Leg]:
    n = draw(st.integers(min_value=1, max_value=3))
    return [
        Leg(
            "NFO",
            SYMBOLS[i],
            draw(st.sampled_from(["NRML", "MIS"])),
            draw(st.sampled_from(["BUY", "SELL"])),
            draw(st.integers(min_value=1, max_value=40)),
            draw(st.sampled_from([1, 15, 25, 50, 75])),
            draw(
                st.sampled_from([D("0"), D("0.05")])
                | st.decimals(min_value=D("1"), max_value=D("50000"), places=2)
            ),
            order_margin=draw(st.sampled_from([D("0")]) | margins),
            freeze_quantity=draw(st.sampled_from([None, 75, 900, 1800])),
        )
        for i in range(n)
    ]


@st.composite
def plans(draw: st.DrawFn) -> GroupPlan:
    """Plans as the engine makes them (`plan_group`), and plans carrying only a stored fraction
    and margin per unit (zero, negative or missing source figures: the batch's other branch)."""
    group = draw(legs())
    capital = draw(capitals)
    try:
        plan = plan_group(
            legs=group,
            master_capital=capital,
            delta_u=draw(signed_paise),
            group_estimate=draw(st.none() | paise),
        )
    except ValueError:
        plan = None
    if plan is not None and draw(st.booleans()):
        return plan
    unit = tuple(leg.master_lots for leg in group)
    return GroupPlan(
        legs=tuple(group),
        attribution=Attribution(D("0"), MarginSource.CALCULATOR, "", tuple(D("0") for _ in group)),
        master_capital=draw(st.sampled_from([D("0"), capital])),
        fraction=draw(st.decimals(min_value=D("0"), max_value=D("2"), places=12)),
        unit_lots=tuple(1 for _ in unit),
        master_units=draw(st.integers(min_value=0, max_value=3)),
        margin_per_unit=draw(st.sampled_from([D("0"), D("-1")]) | margins),
    )


@st.composite
def children(draw: st.DrawFn) -> list[ChildProfile]:
    out = []
    for child_id in range(draw(st.integers(min_value=1, max_value=6))):
        instruments = st.frozensets(st.sampled_from([f"NFO:{s}" for s in SYMBOLS]), max_size=3)
        limits = ChildLimits(
            allowed_instruments=draw(st.sampled_from([frozenset()]) | instruments),
            blocked_instruments=draw(st.sampled_from([frozenset()]) | instruments),
            allowed_products=draw(st.sampled_from([frozenset(), frozenset({"NRML"}), frozenset({"MIS"})])),
            max_lots_per_order=draw(st.none() | st.integers(min_value=0, max_value=50)),
            max_quantity=draw(st.none() | st.integers(min_value=0, max_value=5000)),
            max_order_value=draw(st.none() | paise),
            max_open_positions=draw(st.none() | st.integers(min_value=0, max_value=4)),
            daily_loss_limit=draw(st.none() | paise),
        )
        out.append(
            ChildProfile(
                child_id,
                draw(st.sampled_from(list(CapitalMode))),
                used=draw(st.none() | signed_paise),
                available=draw(st.none() | signed_paise),
                fixed_capital=draw(st.none() | signed_paise),
                multiplier=draw(
                    st.sampled_from([D("1")]) | st.decimals(min_value=D("0"), max_value=D("5"), places=2)
                ),
                limits=draw(st.sampled_from([ChildLimits()]) | st.just(limits)),
                open_instruments=draw(instruments),
                day_pnl=draw(signed_paise),
                margin_per_unit=draw(st.none() | st.sampled_from([D("0"), D("-5")]) | paise),
            )
        )
    return out


@settings(max_examples=400, deadline=None)
@given(plans(), children())
def test_sizing_batch_equals_the_readable_rules(plan, kids):
    """`size_entries` (the fast loop) gives every child exactly what `size_entry` (one rule per
    function) gives it: units, orders and slices, capital, target, reason, caps and message."""
    batch = size_entries(plan, kids)
    readable = [size_entry(plan, child) for child in kids]
    assert batch == readable
    assert [e.message for e in batch] == [e.message for e in readable]
    assert [type(e.reason) for e in batch] == [type(e.reason) for e in readable]


@settings(max_examples=150, deadline=None)
@given(legs(), capitals, signed_paise, st.none() | paise, children())
def test_sizing_stored_plan_sizes_every_child_as_the_plan_it_came_from(
    group, capital, delta_u, estimate, kids
):
    """What the allocations store (`leg_plans`, rebuilt by `group_plan`) sizes every child as the
    group's plan did: no sizing figure is recomputed differently on the way through the rows."""
    plan = plan_group(legs=group, master_capital=capital, delta_u=delta_u, group_estimate=estimate)
    stored = leg_plans(plan)
    rebuilt = group_plan(stored)
    if plan.attribution.group_margin <= 0:
        assert rebuilt is None
        return
    assert rebuilt is not None
    assert rebuilt.attribution.group_margin == plan.attribution.group_margin
    assert sum(lp.attributed_margin for lp in stored) == plan.attribution.group_margin
    assert size_entries(rebuilt, kids) == size_entries(plan, kids)


@settings(max_examples=50, deadline=None)
@given(legs(), paise, signed_paise)
def test_sizing_allocation_stores_and_returns_its_typed_plan(group, capital, delta_u):
    """An `Allocation` gives back the leg plan it was given (`store_sizing_plan`, `sizing_plan`)."""
    plan = plan_group(legs=group, master_capital=capital, delta_u=delta_u)
    for lp in leg_plans(plan):
        alloc = Allocation(reason=lp.reason)
        alloc.store_sizing_plan(lp)
        assert alloc.sizing_plan() == lp
