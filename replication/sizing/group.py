"""The group-level plan of an opening event (steps 1, 2, 4 and 6 of DESIGN §3.3), and the typed
plan each leg's `Allocation` row stores and returns (`LegPlan`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from replication.sizing.attribution import attribute_margin, paise_shares
from replication.sizing.fraction import fraction
from replication.sizing.money import ZERO, ratio
from replication.sizing.records import Attribution, GroupPlan, Leg, LegPlan
from replication.sizing.units import margin_per_unit, unit_shape


def plan_group(
    *, legs: Sequence[Leg], master_capital: Decimal, delta_u: Decimal, group_estimate: Decimal | None = None
) -> GroupPlan:
    """Steps 1, 2, 4 and 6 for the whole group: attribution, fraction, unit and margin per unit."""
    if not legs:
        raise ValueError("an opening group needs at least one leg")
    if master_capital <= 0:
        raise ValueError(f"master capital must be positive, got {master_capital}")
    for leg in legs:
        if leg.lot_size <= 0:
            raise ValueError(f"{leg.instrument}: lot size must be positive")
    attribution = attribute_margin(
        delta_u=delta_u, leg_margins=[leg.order_margin for leg in legs], group_estimate=group_estimate
    )
    unit, master_units = unit_shape([leg.master_lots for leg in legs])
    return GroupPlan(
        legs=tuple(legs),
        attribution=attribution,
        master_capital=master_capital,
        fraction=fraction(group_margin=attribution.group_margin, master_capital=master_capital),
        unit_lots=unit,
        master_units=master_units,
        margin_per_unit=margin_per_unit(group_margin=attribution.group_margin, master_units=master_units),
    )


def leg_plans(plan: GroupPlan) -> tuple[LegPlan, ...]:
    """What each leg's allocation stores: its margin share in paise (also the stored leg's own
    margin: the calculator's figure for the order alone is not kept), the display fraction."""
    return tuple(
        LegPlan(
            leg=replace(leg, order_margin=share),
            master_capital=plan.master_capital,
            attributed_margin=share,
            source=plan.attribution.source,
            reason=plan.attribution.reason,
            fraction=ratio(plan.fraction),
            unit_lots=unit,
        )
        for leg, share, unit in zip(
            plan.legs, paise_shares(plan.attribution.leg_margins), plan.unit_lots, strict=True
        )
    )


def group_plan(legs: Sequence[LegPlan]) -> GroupPlan | None:
    """The group's plan from its stored legs (the first leg's capital, source and reason), or None
    when there is no margin figure to size by (ΔU did not rise and no calculator estimate).

    The fraction and the margin per unit come from the stored margin and capital, unrounded (the
    stored `fraction` is for display): rounding happens once, at whole lots.
    """
    if not legs:
        return None
    first = legs[0]
    unit = tuple(lp.unit_lots or lp.leg.master_lots for lp in legs)
    master_units = first.leg.master_lots // unit[0] if unit[0] else 0
    group_margin = sum((lp.attributed_margin for lp in legs), ZERO)
    if master_units <= 0 or group_margin <= 0 or first.master_capital <= 0:
        return None
    return GroupPlan(
        legs=tuple(lp.leg for lp in legs),
        attribution=Attribution(
            group_margin, first.source, first.reason, tuple(lp.attributed_margin for lp in legs)
        ),
        master_capital=first.master_capital,
        fraction=fraction(group_margin=group_margin, master_capital=first.master_capital),
        unit_lots=unit,
        master_units=master_units,
        margin_per_unit=margin_per_unit(group_margin=group_margin, master_units=master_units),
    )
