"""Issue 11 proof, mutation testing: the sizing rules of DESIGN §3.3, §3.4 and §3.6 at their edges.

Each test states a rule and checks it at the boundary where a slip in the code (a `<` for a `<=`,
a floor for a round, a dropped cap, a rounding mode) changes what a child is sent. They are pure
(no database), so `make mutate` runs them first for every sizing mutant (docs/mutation.md).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from replication.sizing import (
    CapitalMode,
    ChildLimits,
    ChildProfile,
    Leg,
    MarginSource,
    Reason,
    attribute_margin,
    money,
    paise_shares,
    plan_exit,
    plan_group,
    ratio,
    rupees,
    size_entries,
    size_entry,
    size_exit,
    slice_quantity,
    unit_shape,
)

D = Decimal
MASTER_CAPITAL = D("1000000")


def fut(lots: int = 2, *, side: str = "BUY", margin: str = "300000", price: str = "20000", **kw) -> Leg:
    """The NIFTY future of DESIGN §3.6 (lot 75)."""
    return Leg("NFO", "NIFTY25DECFUT", "NRML", side, lots, 75, D(price), order_margin=D(margin), **kw)


def call(lots: int = 2, *, margin: str = "30000", price: str = "200") -> Leg:
    return Leg("NFO", "NIFTY25DEC20000CE", "NRML", "BUY", lots, 75, D(price), order_margin=D(margin))


def worked_plan():
    """§3.6 step 1: master BUY 2 lots, ΔU 3,00,000 on capital 10,00,000."""
    return plan_group(legs=[fut()], master_capital=MASTER_CAPITAL, delta_u=D("300000"))


def total(cid: int, capital: str, **kw) -> ChildProfile:
    return ChildProfile(cid, CapitalMode.TOTAL, used=D("0"), available=D(capital), **kw)


def assert_whole(entry) -> None:
    """Orders are in whole lots: integers a broker accepts, every slice a whole number of lots."""
    for order in entry.orders:
        assert type(order.lots) is int and type(order.quantity) is int
        assert all(type(s) is int for s in order.slices)
        assert sum(order.slices) == order.quantity


def assert_skipped(entry, *, child, reason, capital, target, message, caps=()) -> None:
    """A zero result for this child: nothing to send, with its reason, figures and words (§3.3 step 5)."""
    assert entry.child_id == child
    assert entry.units == 0 and entry.orders == () and entry.total_lots == 0
    assert entry.reason == reason
    assert entry.capital == capital
    assert entry.target_margin == target
    assert entry.message == message
    assert entry.caps_hit == caps


# --- §3.3 step 1: attribution and the 50 % calculator tolerance ------------------------------


@pytest.mark.parametrize(
    ("delta_u", "source", "margin"),
    [
        ("300000", MarginSource.DELTA_U, "300000"),  # agrees with the calculator
        ("450000", MarginSource.DELTA_U, "450000"),  # exactly 50 % above: still ΔU
        ("150000", MarginSource.DELTA_U, "150000"),  # exactly 50 % below: still ΔU
        ("450000.01", MarginSource.CALCULATOR, "300000"),  # a paisa beyond: the calculator
        ("149999.99", MarginSource.CALCULATOR, "300000"),
        ("1", MarginSource.CALCULATOR, "300000"),  # a positive but tiny rise
    ],
)
def test_money_mutants_sizing_calculator_tolerance_is_fifty_percent_inclusive(delta_u, source, margin):
    """Issue 11 mutation proof, §3.3 step 1: ΔU more than 50 % from the calculator is replaced."""
    att = attribute_margin(delta_u=D(delta_u), leg_margins=[D("300000")])
    assert att.source == source
    assert att.group_margin == D(margin)
    assert att.leg_margins == (D(margin),)
    if source == MarginSource.DELTA_U:
        assert att.reason == "rise in used margin across the tick"
    else:
        assert att.reason == (
            f"ΔU {rupees(D(delta_u))} is more than 50% away from the calculator's ₹3,00,000.00 "
            "(settlement lag or M2M noise); using the calculator"
        )


@pytest.mark.parametrize("delta_u", ["0", "-5000"])
def test_money_mutants_sizing_no_rise_uses_the_calculator_and_says_why(delta_u):
    """Issue 11 mutation proof, §3.3 step 1: ΔU ≤ 0 (a hedge released margin) → the calculator."""
    att = attribute_margin(delta_u=D(delta_u), leg_margins=[D("100000"), D("300000")])
    assert att.source == MarginSource.CALCULATOR
    assert att.group_margin == D("400000")
    assert att.leg_margins == (D("100000"), D("300000"))
    assert att.reason == (
        f"used margin did not rise (ΔU {rupees(D(delta_u))}); using the calculator's ₹4,00,000.00"
    )


def test_money_mutants_sizing_no_rise_and_no_calculator_figure_is_zero():
    """Issue 11 mutation proof, §3.3 step 1: no rise and no estimate: no margin to size on."""
    att = attribute_margin(delta_u=D("0"), leg_margins=[D("0"), D("-20000")])
    assert att.source == MarginSource.CALCULATOR
    assert att.group_margin == 0
    assert att.leg_margins == (D("0"), D("0"))  # a negative estimate counts as none
    assert att.reason == "no margin change and no calculator figure"
    # The smallest positive estimate is still a figure.
    tiny = attribute_margin(delta_u=D("-1"), leg_margins=[D("1")])
    assert (tiny.source, tiny.group_margin, tiny.leg_margins) == (MarginSource.CALCULATOR, D("1"), (D("1"),))


def test_money_mutants_sizing_rise_without_calculator_figure_is_trusted():
    """Issue 11 mutation proof, §3.3 step 1: with no estimate to compare, a positive ΔU is used."""
    att = attribute_margin(delta_u=D("100000"), leg_margins=[D("0"), D("-5")])
    assert att.source == MarginSource.DELTA_U
    assert att.group_margin == D("100000")
    assert att.leg_margins == (D("50000"), D("50000"))  # no figures to share by: evenly


def test_money_mutants_sizing_basket_estimate_is_the_groups_calculator_figure():
    """Issue 11 mutation proof, §3.3 step 1: the basket figure (hedge benefit) is the one compared.

    Legs alone 3,30,000; the basket 1,20,000. ΔU 1,20,000 agrees with the basket. A zero or missing
    basket figure falls back to the legs alone; any positive one, however small, is used.
    """
    legs = [D("30000"), D("300000")]
    with_basket = attribute_margin(delta_u=D("120000"), leg_margins=legs, group_estimate=D("120000"))
    assert (with_basket.source, with_basket.group_margin) == (MarginSource.DELTA_U, D("120000"))
    for estimate in (None, D("0")):
        alone = attribute_margin(delta_u=D("120000"), leg_margins=legs, group_estimate=estimate)
        assert (alone.source, alone.group_margin) == (MarginSource.CALCULATOR, D("330000"))
        assert alone.leg_margins == (D("30000"), D("300000"))
    small = attribute_margin(delta_u=D("1"), leg_margins=legs, group_estimate=D("1"))
    assert (small.source, small.group_margin) == (MarginSource.DELTA_U, D("1"))
    far = attribute_margin(delta_u=D("10"), leg_margins=legs, group_estimate=D("1"))  # ₹1 is compared too
    assert (far.source, far.group_margin) == (MarginSource.CALCULATOR, D("1"))


def test_money_mutants_sizing_leg_shares_are_proportional_to_their_own_margins():
    """Issue 11 mutation proof, §3.3 step 1: each event's share is proportional to its margin."""
    att = attribute_margin(delta_u=D("200000"), leg_margins=[D("50000"), D("150000")])
    assert att.leg_margins == (D("50000"), D("150000"))
    scaled = attribute_margin(delta_u=D("300000"), leg_margins=[D("50000"), D("150000"), D("0")])
    assert scaled.source == MarginSource.DELTA_U
    assert scaled.leg_margins == (D("75000"), D("225000"), D("0"))
    small = attribute_margin(delta_u=D("1"), leg_margins=[D("0.25"), D("0.75")])
    assert small.leg_margins == (D("0.25"), D("0.75"))


# --- §3.3 steps 2-6: fraction, target, whole units ---------------------------------------------


def test_money_mutants_sizing_worked_example_children_and_skip_messages():
    """Issue 11 mutation proof, §3.6 step 1: every child's target, lots, order and reason."""
    plan = worked_plan()
    assert plan.fraction == D("0.3")
    assert plan.margin_per_unit == D("150000")
    assert plan.unit_lots == (1,) and plan.master_units == 2
    children = [
        total(1, "500000"),
        total(2, "2000000"),
        total(3, "250000"),
        ChildProfile(4, CapitalMode.FIXED, fixed_capital=D("1000000"), multiplier=D("0.5")),
        total(5, "700000"),
    ]
    entries = size_entries(plan, children)
    got = [(e.child_id, e.target_margin, e.units, [(o.side, o.quantity) for o in e.orders]) for e in entries]
    assert got == [
        (1, D("150000"), 1, [("BUY", 75)]),
        (2, D("600000"), 4, [("BUY", 300)]),
        (3, D("75000"), 0, []),
        (4, D("150000"), 1, [("BUY", 75)]),
        (5, D("210000"), 1, [("BUY", 75)]),
    ]
    for e in entries:
        assert_whole(e)
        if e.units:
            assert (e.reason, e.message, e.caps_hit) == (Reason.OK, "", ())
    c3 = entries[2]
    assert (c3.reason, c3.capital, c3.needs, c3.caps_hit) == (
        Reason.BELOW_ONE_UNIT,
        D("250000"),
        D("150000"),
        (),
    )
    assert c3.message == "needs ₹1,50,000.00 for one lot, share is ₹75,000.00"


def test_money_mutants_sizing_capital_modes():
    """Issue 11 mutation proof, §3.3 step 3: TOTAL is U + A, AVAILABLE is A, FIXED the amount."""
    plan = worked_plan()
    mode_total = ChildProfile(1, CapitalMode.TOTAL, used=D("300000"), available=D("700000"))
    mode_available = ChildProfile(2, CapitalMode.AVAILABLE, used=D("300000"), available=D("700000"))
    mode_fixed = ChildProfile(3, CapitalMode.FIXED, fixed_capital=D("2000000"))  # no readings needed
    a, b, c = size_entries(plan, [mode_total, mode_available, mode_fixed])
    assert (a.capital, a.target_margin, a.units) == (D("1000000"), D("300000"), 2)
    assert (b.capital, b.target_margin, b.units) == (D("700000"), D("210000"), 1)
    assert (c.capital, c.target_margin, c.units, c.reason) == (D("2000000"), D("600000"), 4, Reason.OK)
    assert mode_total.capital() == D("1000000")
    assert mode_available.capital() == D("700000")
    assert mode_fixed.capital() == D("2000000")
    assert ChildProfile(4, CapitalMode.TOTAL, used=D("5"), available=None).capital() is None
    assert ChildProfile(4, CapitalMode.AVAILABLE, used=None, available=D("5")).capital() is None


@pytest.mark.parametrize(
    ("child", "capital", "message"),
    [
        (ChildProfile(1, CapitalMode.TOTAL), None, "no capital reading for this child yet"),
        (ChildProfile(2, CapitalMode.TOTAL, used=None, available=D("500000")), None, None),
        (ChildProfile(3, CapitalMode.TOTAL, used=D("500000"), available=None), None, None),
        (ChildProfile(4, CapitalMode.FIXED, used=D("0"), available=D("900000")), None, None),
        (ChildProfile(5, CapitalMode.TOTAL, used=D("0"), available=D("0")), D("0"), "capital is ₹0.00"),
        (
            ChildProfile(6, CapitalMode.FIXED, fixed_capital=D("-100"), available=D("900000")),
            D("-100"),
            "capital is -₹100.00",
        ),
    ],
)
def test_money_mutants_sizing_no_capital_sends_nothing(child, capital, message):
    """Issue 11 mutation proof, §3.3 step 3: no reading, or no capital, is a skip with a reason."""
    entry = size_entry(worked_plan(), child)
    assert_skipped(
        entry,
        child=child.child_id,
        reason=Reason.NO_CAPITAL,
        capital=capital,
        target=D("0"),
        message=message or "no capital reading for this child yet",
    )


def test_money_mutants_sizing_multiplier_scales_the_target():
    """Issue 11 mutation proof, §3.3 step 3: T = f × C × multiplier (half, one, two and a half)."""
    plan = worked_plan()
    half, one, more = size_entries(
        plan,
        [
            total(1, "1000000", multiplier=D("0.5")),
            total(2, "1000000", multiplier=D("1.0")),
            total(3, "1000000", multiplier=D("2.5")),
        ],
    )
    assert (half.target_margin, half.units) == (D("150000"), 1)
    assert (one.target_margin, one.units) == (D("300000"), 2)
    assert (more.target_margin, more.units) == (D("750000"), 5)


def test_money_mutants_sizing_never_above_available_margin():
    """Issue 11 mutation proof, §3.3 step 3: the target never exceeds the child's available margin."""
    plan = worked_plan()
    # Share 3,00,000 of capital 10,00,000; only 2,99,999.99 available: capped, one unit.
    capped = size_entry(
        plan, ChildProfile(1, CapitalMode.TOTAL, used=D("700000.01"), available=D("299999.99"))
    )
    assert (capped.target_margin, capped.units, capped.reason) == (
        D("299999.99"),
        1,
        Reason.CAPPED_BY_AVAILABLE,
    )
    assert capped.caps_hit == (Reason.CAPPED_BY_AVAILABLE,)
    assert capped.message == "reduced by capped_by_available"
    assert_whole(capped)
    # Exactly the share available: not capped.
    exact = size_entry(plan, ChildProfile(2, CapitalMode.TOTAL, used=D("700000"), available=D("300000")))
    assert (exact.target_margin, exact.units, exact.reason, exact.caps_hit) == (D("300000"), 2, Reason.OK, ())
    # A FIXED mandate larger than what is free is capped by the free margin, in whole units of it.
    fixed = size_entry(
        plan,
        ChildProfile(3, CapitalMode.FIXED, used=D("0"), available=D("450000"), fixed_capital=D("5000000")),
    )
    assert (fixed.target_margin, fixed.units, fixed.reason) == (D("450000"), 3, Reason.CAPPED_BY_AVAILABLE)
    # Nothing free at all: a skip that says what the share was.
    for available in ("0", "-10"):
        broke = size_entry(
            plan, ChildProfile(4, CapitalMode.FIXED, available=D(available), fixed_capital=D("1e6"))
        )
        assert_skipped(
            broke,
            child=4,
            reason=Reason.NO_AVAILABLE_MARGIN,
            capital=D("1e6"),
            target=D("0"),
            message="no available margin (share was ₹3,00,000.00)",
        )


def test_money_mutants_sizing_exact_units_without_a_rounded_fraction():
    """Issue 11 defect 2: units are floor(ΔU × C × m / C_m / margin per unit), exact at any scale.

    A fraction that repeats (1/3) must not lose a unit: a child with exactly the master's capital
    gets exactly the master's units, one with twice it twice them; also with paise-sized figures.
    """
    legs = [fut(3, margin="100000")]
    plan = plan_group(legs=legs, master_capital=D("300000"), delta_u=D("100000"))
    same, twice, just_below = size_entries(
        plan, [total(1, "300000"), total(2, "600000"), total(3, "299999.99")]
    )
    assert (same.units, twice.units, just_below.units) == (3, 6, 2)
    assert [o.quantity for o in twice.orders] == [450]
    assert_whole(twice)
    for cap in ("0.75", "3"):  # master capital at or below ₹1, and above
        small = plan_group(legs=[fut(1, margin=str(D(cap) / 3))], master_capital=D(cap), delta_u=D(cap) / 3)
        (entry,) = size_entries(small, [total(1, cap)])
        assert (entry.units, entry.reason) == (1, Reason.OK), cap
    # Through a capped target and a preflight figure too: 1,00,000 free at 33,333.33... a lot is 3.
    capped = size_entry(plan, ChildProfile(4, CapitalMode.TOTAL, used=D("500000"), available=D("100000")))
    assert (capped.units, capped.reason) == (3, Reason.CAPPED_BY_AVAILABLE)
    pre = size_entry(plan, total(5, "900000", margin_per_unit=D("100000")))  # T 3,00,000
    assert (pre.units, pre.reason) == (3, Reason.OK)


def test_money_mutants_sizing_no_margin_figure_sizes_nobody():
    """Issue 11 mutation proof, §3.3 step 1: no rise and no calculator figure is no margin per lot:
    every child is skipped as bad input, with or without its own preflight figure, and none is sent."""
    plan = plan_group(legs=[fut(margin="0")], master_capital=MASTER_CAPITAL, delta_u=D("0"))
    assert (plan.attribution.group_margin, plan.margin_per_unit, plan.fraction) == (0, 0, 0)
    plain, own = size_entries(plan, [total(1, "2000000"), total(2, "2000000", margin_per_unit=D("150000"))])
    assert_skipped(
        plain,
        child=1,
        reason=Reason.BAD_INPUT,
        capital=D("2000000"),
        target=D("0"),
        message="margin per unit is not positive",
    )
    assert (own.units, own.orders, own.reason, own.needs) == (0, (), Reason.BELOW_ONE_UNIT, D("150000"))


def test_money_mutants_sizing_a_skipped_child_never_stops_the_next():
    """Issue 11 defect 7 (one child stops everyone), in sizing: whatever skips one child (no reading,
    no capital, no free margin, a bad preflight figure, a blocking cap), the children after it
    are still sized."""
    skips = [
        ChildProfile(1, CapitalMode.TOTAL),
        total(2, "0"),
        ChildProfile(3, CapitalMode.FIXED, available=D("0"), fixed_capital=D("1000000")),
        total(4, "2000000", margin_per_unit=D("0")),
        total(5, "2000000", limits=ChildLimits(max_quantity=1)),
    ]
    for skip in skips:
        first, second = size_entries(worked_plan(), [skip, total(9, "2000000")])
        assert first.units == 0 and first.child_id == skip.child_id
        assert (second.child_id, second.units, second.reason) == (9, 4, Reason.OK)


def test_money_mutants_sizing_floor_of_lots_not_rounding():
    """Issue 11 mutation proof, §3.3 step 5: lots = floor(T / margin per lot), never rounded up."""
    plan = worked_plan()
    got = [
        size_entry(plan, total(i, c)).units
        for i, c in enumerate(["999999.99", "1000000", "1499999.99", "1500000"])
    ]
    assert got == [1, 2, 2, 3]


def test_money_mutants_sizing_child_margin_preflight():
    """Issue 11 mutation proof, §3.3 step 4: with preflight, the child's own margin per unit counts."""
    plan = worked_plan()  # C2's target is 6,00,000
    cheaper = size_entry(plan, total(2, "2000000", margin_per_unit=D("100000")))
    dearer = size_entry(plan, total(2, "2000000", margin_per_unit=D("200000.01")))
    assert (cheaper.units, dearer.units) == (6, 2)
    # Capped target with preflight: 2,50,000 free at 1,00,000 a unit.
    capped = size_entry(
        plan,
        ChildProfile(
            2, CapitalMode.TOTAL, used=D("1750000"), available=D("250000"), margin_per_unit=D("100000")
        ),
    )
    assert (capped.units, capped.reason) == (2, Reason.CAPPED_BY_AVAILABLE)
    # Below one unit at the child's own figure: the message names that figure.
    short = size_entry(plan, total(1, "500000", margin_per_unit=D("150000.01")))
    assert (short.units, short.orders, short.reason) == (0, (), Reason.BELOW_ONE_UNIT)
    assert short.needs == D("150000.01")
    assert short.message == "needs ₹1,50,000.01 for one lot, share is ₹1,50,000.00"
    for bad in ("0", "-1"):
        entry = size_entry(plan, total(3, "500000", margin_per_unit=D(bad)))
        assert_skipped(
            entry,
            child=3,
            reason=Reason.BAD_INPUT,
            capital=D("500000"),
            target=D("150000"),
            message="margin per unit is not positive",
        )


def test_money_mutants_sizing_spread_other_than_one_to_one_keeps_shape():
    """Issue 11 mutation proof, §3.3 step 6: a 1:2 spread gives whole units of (1, 2) lots."""
    legs = [call(2, margin="40000"), fut(4, side="SELL", margin="200000")]
    plan = plan_group(legs=legs, master_capital=MASTER_CAPITAL, delta_u=D("240000"))
    assert plan.unit_lots == (1, 2) and plan.master_units == 2
    assert plan.margin_per_unit == D("120000")
    three, none = size_entries(plan, [total(1, "1500000"), total(2, "450000")])
    assert three.units == 3
    assert [(o.leg_index, o.side, o.lots, o.quantity) for o in three.orders] == [
        (0, "BUY", 3, 225),
        (1, "SELL", 6, 450),
    ]
    assert_whole(three)
    assert (none.units, none.orders, none.reason) == (0, (), Reason.BELOW_ONE_UNIT)
    assert none.message == "needs ₹1,20,000.00 for one unit, share is ₹1,08,000.00"
    # Three legs 2:4:6 reduce to 1:2:3.
    assert unit_shape([2, 4, 6]) == ((1, 2, 3), 2)
    assert unit_shape([3, 2]) == ((3, 2), 1)
    assert all(type(x) is int for x in unit_shape([4, 8])[0])


def test_money_mutants_sizing_hedge_one_to_one_below_one_unit_says_unit():
    """Issue 11 mutation proof, §3.6 step 4: C3 cannot afford one unit and gets none of the legs."""
    legs = [call(2, margin="20000"), fut(2, side="SELL", margin="100000")]
    plan = plan_group(legs=legs, master_capital=MASTER_CAPITAL, delta_u=D("120000"))
    c3 = size_entry(plan, total(3, "250000"))
    assert (c3.units, c3.orders, c3.needs) == (0, (), D("60000"))
    assert c3.message == "needs ₹60,000.00 for one unit, share is ₹30,000.00"


def test_money_mutants_sizing_plan_rejects_what_cannot_be_sized():
    """Issue 11 mutation proof, §3.3: no legs, no master capital or no lot size is an error."""
    with pytest.raises(ValueError, match=r"^an opening group needs at least one leg$"):
        plan_group(legs=[], master_capital=MASTER_CAPITAL, delta_u=D("1"))
    for capital in ("0", "-1"):
        with pytest.raises(ValueError, match=r"^master capital must be positive, got "):
            plan_group(legs=[fut()], master_capital=D(capital), delta_u=D("1"))
    bad_lot = Leg("NFO", "X", "NRML", "BUY", 1, 0, D("1"), order_margin=D("1"))
    with pytest.raises(ValueError, match=r"^NFO:X: lot size must be positive$"):
        plan_group(legs=[bad_lot], master_capital=MASTER_CAPITAL, delta_u=D("1"))
    for lots in ([], [2, 0], [-1]):
        with pytest.raises(ValueError, match=r"^every leg needs a positive number of master lots$"):
            unit_shape(lots)
    # The smallest valid figures are valid: a stock (lot 1), ₹1 of capital, one lot.
    stock = Leg("NSE", "ITC", "CNC", "BUY", 1, 1, D("1"), order_margin=D("1"))
    plan = plan_group(legs=[stock], master_capital=D("1"), delta_u=D("1"))
    assert (plan.fraction, plan.margin_per_unit, plan.master_units) == (D("1"), D("1"), 1)
    assert size_entry(plan, total(1, "3")).orders[0].quantity == 3


# --- §3.3 step 7: caps, in order ----------------------------------------------------------------


def capped(limits: ChildLimits, *, plan=None, **kw):
    """C2 of §3.6 (target 6,00,000: 4 lots) with limits."""
    return size_entry(plan or worked_plan(), total(2, "2000000", limits=limits, **kw))


@pytest.mark.parametrize(
    ("limits", "units", "caps"),
    [
        (ChildLimits(max_lots_per_order=4), 4, ()),  # at the limit: not reduced
        (ChildLimits(max_lots_per_order=3), 3, (Reason.MAX_LOTS,)),
        (ChildLimits(max_lots_per_order=1), 1, (Reason.MAX_LOTS,)),
        (ChildLimits(max_quantity=300), 4, ()),
        (ChildLimits(max_quantity=299), 3, (Reason.MAX_QUANTITY,)),
        (ChildLimits(max_quantity=75), 1, (Reason.MAX_QUANTITY,)),
        (ChildLimits(max_order_value=D("6000000")), 4, ()),  # 300 × 20,000
        (ChildLimits(max_order_value=D("5999999.99")), 3, (Reason.MAX_ORDER_VALUE,)),
        (ChildLimits(max_order_value=D("1500000")), 1, (Reason.MAX_ORDER_VALUE,)),
        (ChildLimits(max_lots_per_order=3, max_quantity=150), 2, (Reason.MAX_LOTS, Reason.MAX_QUANTITY)),
        (ChildLimits(allowed_instruments=frozenset({"NFO:NIFTY25DECFUT"})), 4, ()),
        (ChildLimits(allowed_products=frozenset({"NRML"})), 4, ()),
        (ChildLimits(blocked_instruments=frozenset({"NFO:BANKNIFTY25DECFUT"})), 4, ()),
        (ChildLimits(max_open_positions=1), 4, ()),  # the future is its first position
        (ChildLimits(daily_loss_limit=D("10000")), 4, ()),  # no loss today
    ],
)
def test_money_mutants_sizing_caps_reduce_to_the_limit_and_name_each(limits, units, caps):
    """Issue 11 mutation proof, §3.3 step 7: a cap reduces lots to its limit and records which bit."""
    entry = capped(limits)
    assert entry.units == units
    assert [o.quantity for o in entry.orders] == [75 * units]
    assert entry.caps_hit == caps
    assert entry.reason == (caps[-1] if caps else Reason.OK)
    assert entry.message == ("reduced by " + ", ".join(c.value for c in caps) if caps else "")
    assert_whole(entry)


@pytest.mark.parametrize(
    ("limits", "reason", "message", "caps", "kw"),
    [
        (
            ChildLimits(allowed_instruments=frozenset({"NFO:BANKNIFTY25DECFUT"})),
            Reason.INSTRUMENT_NOT_ALLOWED,
            "NFO:NIFTY25DECFUT is not in this child's allowed instruments",
            (),
            {},
        ),
        (
            ChildLimits(blocked_instruments=frozenset({"NFO:NIFTY25DECFUT"})),
            Reason.INSTRUMENT_BLOCKED,
            "NFO:NIFTY25DECFUT is blocked for this child",
            (),
            {},
        ),
        (
            ChildLimits(allowed_products=frozenset({"MIS"})),
            Reason.PRODUCT_NOT_ALLOWED,
            "product NRML is not allowed for this child",
            (),
            {},
        ),
        (
            ChildLimits(max_lots_per_order=0),
            Reason.MAX_LOTS,
            "max 0 lots per order allows less than one unit",
            (Reason.MAX_LOTS,),
            {},
        ),
        (
            ChildLimits(max_quantity=74),
            Reason.MAX_QUANTITY,
            "max quantity 74 allows less than one unit",
            (Reason.MAX_QUANTITY,),
            {},
        ),
        (
            ChildLimits(max_order_value=D("1499999.99")),
            Reason.MAX_ORDER_VALUE,
            "max order value ₹14,99,999.99 allows less than one unit",
            (Reason.MAX_ORDER_VALUE,),
            {},
        ),
        (
            ChildLimits(max_open_positions=2),
            Reason.MAX_OPEN_POSITIONS,
            "would hold 3 positions, limit 2",
            (Reason.MAX_OPEN_POSITIONS,),
            {"open_instruments": frozenset({"NFO:A", "NFO:B"})},
        ),
        (
            ChildLimits(daily_loss_limit=D("10000")),
            Reason.DAILY_LOSS_LIMIT,
            "today's loss ₹10,000.00 reached the limit ₹10,000.00; entries stop, exits continue",
            (Reason.DAILY_LOSS_LIMIT,),
            {"day_pnl": D("-10000")},
        ),
        (
            ChildLimits(daily_loss_limit=D("-10000")),  # entered as a negative amount: the same limit
            Reason.DAILY_LOSS_LIMIT,
            "today's loss ₹12,000.50 reached the limit ₹10,000.00; entries stop, exits continue",
            (Reason.DAILY_LOSS_LIMIT,),
            {"day_pnl": D("-12000.50")},
        ),
    ],
)
def test_money_mutants_sizing_caps_that_block_say_why(limits, reason, message, caps, kw):
    """Issue 11 mutation proof, §3.3 step 7: a cap that allows no unit blocks the entry, with why."""
    entry = capped(limits, **kw)
    assert_skipped(
        entry, child=2, reason=reason, capital=D("2000000"), target=D("600000"), message=message, caps=caps
    )


def test_money_mutants_sizing_open_positions_and_loss_limit_edges():
    """Issue 11 mutation proof, §3.3 step 7: a held instrument is no new position; a loss under the limit."""
    held = capped(ChildLimits(max_open_positions=1), open_instruments=frozenset({"NFO:NIFTY25DECFUT"}))
    assert (held.units, held.reason) == (4, Reason.OK)
    at_limit = capped(ChildLimits(max_open_positions=2), open_instruments=frozenset({"NFO:A"}))
    assert (at_limit.units, at_limit.reason) == (4, Reason.OK)
    under = capped(ChildLimits(daily_loss_limit=D("10000")), day_pnl=D("-9999.99"))
    assert (under.units, under.reason) == (4, Reason.OK)
    gain = capped(ChildLimits(daily_loss_limit=D("10000")), day_pnl=D("50000"))
    assert (gain.units, gain.reason) == (4, Reason.OK)


def test_money_mutants_sizing_caps_on_a_spread_apply_to_each_legs_order():
    """Issue 11 mutation proof, §3.3 steps 6-7: caps bind on the leg with most lots per unit.

    Unit (1 call, 2 futures); C2 of §3.6 can afford 4 units. Max 5 lots per order allows 2 units
    (the future leg: 4 lots); max quantity 374 allows 2 (the future: 300); a max order value of
    ₹60,00,000 allows 2 (future: 2 × 75 × 20,000 = ₹30,00,000 a unit). Each leg is checked, the
    second leg too.
    """
    legs = [call(2, margin="40000"), fut(4, side="SELL", margin="200000")]
    plan = plan_group(legs=legs, master_capital=MASTER_CAPITAL, delta_u=D("240000"))
    assert capped(ChildLimits(), plan=plan).units == 4
    for limits, reason in [
        (ChildLimits(max_lots_per_order=5), Reason.MAX_LOTS),
        (ChildLimits(max_quantity=374), Reason.MAX_QUANTITY),
        (ChildLimits(max_order_value=D("6000000")), Reason.MAX_ORDER_VALUE),
    ]:
        entry = capped(limits, plan=plan)
        assert (entry.units, entry.caps_hit) == (2, (reason,)), limits
        assert [(o.lots, o.quantity) for o in entry.orders] == [(2, 150), (4, 300)]
        assert_whole(entry)
    blocked_second = capped(ChildLimits(blocked_instruments=frozenset({"NFO:NIFTY25DECFUT"})), plan=plan)
    assert (blocked_second.units, blocked_second.reason) == (0, Reason.INSTRUMENT_BLOCKED)
    only_call = capped(ChildLimits(allowed_instruments=frozenset({"NFO:NIFTY25DEC20000CE"})), plan=plan)
    assert (only_call.units, only_call.reason) == (0, Reason.INSTRUMENT_NOT_ALLOWED)
    # Both legs new: two positions.
    two = capped(ChildLimits(max_open_positions=2), plan=plan)
    assert two.units == 4
    one = capped(ChildLimits(max_open_positions=1), plan=plan)
    assert one.message == "would hold 2 positions, limit 1"


def test_money_mutants_sizing_order_value_of_a_cheap_instrument():
    """Issue 11 mutation proof, §3.3 step 7: max order value is quantity × price, also at ₹1."""
    stock = Leg("NSE", "PENNY", "CNC", "BUY", 100, 1, D("1"), order_margin=D("100"))
    plan = plan_group(legs=[stock], master_capital=D("1000"), delta_u=D("100"))
    entry = size_entry(plan, total(1, "1000", limits=ChildLimits(max_order_value=D("60"))))
    assert (entry.units, entry.caps_hit) == (60, (Reason.MAX_ORDER_VALUE,))
    assert entry.orders[0].quantity == 60


def test_money_mutants_sizing_two_caps_reported_in_order_with_the_last_as_reason():
    """Issue 11 mutation proof, §3.3 step 7: available margin then max lots; the last one is the reason."""
    child = ChildProfile(
        2,
        CapitalMode.TOTAL,
        used=D("1500000"),
        available=D("500000"),
        limits=ChildLimits(max_lots_per_order=2),
    )
    entry = size_entry(worked_plan(), child)  # share 6,00,000, free 5,00,000 → 3 lots, max 2
    assert entry.units == 2
    assert entry.caps_hit == (Reason.CAPPED_BY_AVAILABLE, Reason.MAX_LOTS)
    assert entry.reason == Reason.MAX_LOTS
    assert entry.message == "reduced by capped_by_available, max_lots_per_order"
    blocked = size_entry(
        worked_plan(),
        ChildProfile(
            2, CapitalMode.TOTAL, used=D("1500000"), available=D("500000"), limits=ChildLimits(max_quantity=1)
        ),
    )
    assert blocked.caps_hit == (Reason.CAPPED_BY_AVAILABLE, Reason.MAX_QUANTITY)
    assert (blocked.reason, blocked.units, blocked.target_margin) == (Reason.MAX_QUANTITY, 0, D("500000"))


# --- freeze quantity --------------------------------------------------------------------------


def test_money_mutants_sizing_slices_at_the_freeze_quantity():
    """Issue 11 mutation proof, §3.3 step 7: orders above the freeze quantity go in whole-lot slices."""
    assert slice_quantity(0, 75, 1800) == ()
    assert slice_quantity(1, 1, None) == (1,)
    assert slice_quantity(1800, 75, 1800) == (1800,)
    assert slice_quantity(3600, 75, 1800) == (1800, 1800)
    assert slice_quantity(3675, 75, 1800) == (1800, 1800, 75)
    assert slice_quantity(3, 1, 1) == (1, 1, 1)
    # A freeze quantity that is not a whole number of lots: slices of the whole lots under it.
    assert slice_quantity(3000, 75, 1000) == (975, 975, 975, 75)
    # An exit of a holding that is not whole lots, at exactly the freeze quantity: one order.
    assert slice_quantity(1000, 75, 1000) == (1000,)
    with pytest.raises(ValueError, match=r"^freeze quantity 50 is below one lot of 75$"):
        slice_quantity(150, 75, 50)
    # Entries are sliced the same way.
    plan = plan_group(legs=[fut(2, freeze_quantity=1800)], master_capital=MASTER_CAPITAL, delta_u=D("300000"))
    big = size_entry(plan, total(9, "17000000"))  # 34 lots, 2,550
    assert big.orders[0].slices == (1800, 750)
    assert_whole(big)
    at = size_entry(plan, total(9, "12000000"))  # 24 lots, 1,800
    assert at.orders[0].slices == (1800,)


# --- §3.4 exits ----------------------------------------------------------------------------------


def test_money_mutants_sizing_exit_ratio_and_master_flat():
    """Issue 11 mutation proof, §3.4: r = closing / position before, absolute; all of it is flat."""
    half = plan_exit(closing_quantity=75, master_position_before=150)
    assert (half.exit_ratio, half.master_flat) == (D("0.5"), False)
    short = plan_exit(closing_quantity=75, master_position_before=-300)  # a short master buys back a quarter
    assert (short.exit_ratio, short.master_flat) == (D("0.25"), False)
    signed = plan_exit(closing_quantity=-150, master_position_before=300)
    assert signed.exit_ratio == D("0.5")
    for closing, before in ((150, 150), (-150, -150), (225, 150), (1, 1)):
        flat = plan_exit(closing_quantity=closing, master_position_before=before)
        assert (flat.exit_ratio, flat.master_flat) == (D("1"), True)
    for closing, before in ((0, 150), (75, 0), (0, 0)):
        with pytest.raises(ValueError, match=r"^a closing event needs a position and a closing quantity$"):
            plan_exit(closing_quantity=closing, master_position_before=before)


def test_money_mutants_sizing_exit_halves_round_up_never_more_than_held():
    """Issue 11 mutation proof, §3.4: exit lots = round(r × held lots), halves up (toward less risk)."""
    half = plan_exit(closing_quantity=75, master_position_before=150)
    got = {lots: size_exit(half, child_id=1, held_quantity=75 * lots, lot_size=75) for lots in (1, 2, 3, 5)}
    assert {k: (v.lots, v.quantity, v.held_lots) for k, v in got.items()} == {
        1: (1, 75, 1),
        2: (1, 75, 2),
        3: (2, 150, 3),
        5: (3, 225, 5),
    }
    assert all(v.child_id == 1 and v.reason == Reason.OK and v.message == "" for v in got.values())
    assert all(v.slices == (v.quantity,) for v in got.values())
    third = plan_exit(closing_quantity=75, master_position_before=225)
    assert size_exit(third, child_id=1, held_quantity=75 * 4, lot_size=75).lots == 1  # 1.33 → 1
    assert size_exit(third, child_id=1, held_quantity=75 * 5, lot_size=75).lots == 2  # 1.67 → 2


def test_money_mutants_sizing_exit_rounding_to_zero_is_reported():
    """Issue 11 mutation proof, §3.4: a share that rounds to no lot sends nothing and says so."""
    tenth = plan_exit(closing_quantity=75, master_position_before=750)
    out = size_exit(tenth, child_id=7, held_quantity=150, lot_size=75)
    assert out == (7, 2, 0, 0, (), Reason.BELOW_ONE_UNIT, "0.1000 of 2 lots rounds to zero")
    assert size_exit(tenth, child_id=7, held_quantity=75 * 5, lot_size=75).lots == 1  # 0.5 → 1


def test_money_mutants_sizing_exit_of_short_positions():
    """Issue 11 mutation proof, §3.4: a short child buys back the same share, as a positive quantity."""
    half = plan_exit(closing_quantity=150, master_position_before=-300)
    out = size_exit(half, child_id=2, held_quantity=-300, lot_size=75)
    assert (out.held_lots, out.lots, out.quantity, out.slices, out.reason) == (4, 2, 150, (150,), Reason.OK)
    flat = plan_exit(closing_quantity=300, master_position_before=-300)
    out = size_exit(flat, child_id=2, held_quantity=-300, lot_size=75)
    assert (out.held_lots, out.lots, out.quantity) == (4, 4, 300)


def test_money_mutants_sizing_exit_of_holdings_not_whole_lots():
    """Issue 11 mutation proof, §3.4: partial exits in whole lots; flat exits everything placed."""
    half = plan_exit(closing_quantity=75, master_position_before=150)
    out = size_exit(half, child_id=1, held_quantity=100, lot_size=75)  # 1 lot and 25
    assert (out.held_lots, out.lots, out.quantity) == (1, 1, 75)
    flat = plan_exit(closing_quantity=150, master_position_before=150)
    out = size_exit(flat, child_id=1, held_quantity=100, lot_size=75)
    assert out == (1, 1, 1, 100, (100,), Reason.OK, "")
    sliced = size_exit(flat, child_id=1, held_quantity=1900, lot_size=75, freeze_quantity=1800)
    assert (sliced.held_lots, sliced.quantity, sliced.slices) == (25, 1900, (1800, 100))
    odd = size_exit(flat, child_id=1, held_quantity=50, lot_size=75)  # less than a lot, still the engine's
    assert (odd.held_lots, odd.lots, odd.quantity, odd.slices) == (0, 0, 50, (50,))


def test_money_mutants_sizing_exit_edges():
    """Issue 11 mutation proof, §3.4: nothing held, a lot of one share, slicing of a partial exit."""
    half = plan_exit(closing_quantity=75, master_position_before=150)
    assert size_exit(half, child_id=3, held_quantity=0, lot_size=75) == (
        3,
        0,
        0,
        0,
        (),
        Reason.NOTHING_HELD,
        "holds nothing the engine placed here",
    )
    flat = plan_exit(closing_quantity=1, master_position_before=1)
    assert size_exit(flat, child_id=4, held_quantity=1, lot_size=1) == (4, 1, 1, 1, (1,), Reason.OK, "")
    one = size_exit(half, child_id=4, held_quantity=2, lot_size=1)
    assert (one.lots, one.quantity) == (1, 1)
    big = size_exit(half, child_id=5, held_quantity=75 * 60, lot_size=75, freeze_quantity=1800)
    assert (big.lots, big.quantity, big.slices) == (30, 2250, (1800, 450))
    for lot in (0, -75):
        with pytest.raises(ValueError, match=r"^lot size must be positive$"):
            size_exit(half, child_id=5, held_quantity=75, lot_size=lot)


# --- money figures ---------------------------------------------------------------------------------


def test_money_mutants_sizing_rupee_figures():
    """Issue 11 proof (mutation testing): rupees in paise, halves up; ratios truncated; Indian grouping."""
    assert money(D("0.125")) == D("0.13")
    assert money(D("2.675")) == D("2.68")
    assert money(D("-0.125")) == D("-0.13")
    assert ratio(D(2) / D(3)) == D("0.666666666666")
    assert ratio(D("0.1234567890129")) == D("0.123456789012")
    assert rupees(D("0")) == "₹0.00"
    assert rupees(D("999")) == "₹999.00"
    assert rupees(D("1000")) == "₹1,000.00"
    assert rupees(D("99999.999")) == "₹1,00,000.00"
    assert rupees(D("1234567890.5")) == "₹1,23,45,67,890.50"
    assert rupees(D("-1500000")) == "-₹15,00,000.00"


def test_money_mutants_sizing_leg_margins_in_paise_add_up_to_the_group():
    """Issue 11 defect 2 (stored figures): leg margins stored in paise sum exactly to the group's
    margin in paise; each leg is rounded down and the last takes the rest (no paisa made or lost)."""
    assert paise_shares([]) == []
    assert paise_shares([D("12.345")]) == [D("12.35")]
    assert paise_shares([D("100.129"), D("200.871")]) == [D("100.12"), D("200.88")]
    thirds = paise_shares([D(1) / 3] * 3)
    assert thirds == [D("0.33"), D("0.33"), D("0.34")]
    four = paise_shares([D("0.015"), D("0.015"), D("0.015"), D("0.015")])
    assert four == [D("0.01"), D("0.01"), D("0.01"), D("0.03")]
    assert sum(four) == money(D("0.06"))
