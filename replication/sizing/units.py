"""Steps 4 and 6 of DESIGN §3.3: one unit's shape (multi-leg groups keep it) and its margin."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import reduce
from math import gcd

from replication.sizing.fraction import Quotient, has_source_figures
from replication.sizing.money import ONE
from replication.sizing.records import ChildProfile, GroupPlan


def unit_shape(master_lots: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """Step 6: the legs' lots reduced to their smallest integer ratio, and how many units the master holds."""
    if not master_lots or any(lots <= 0 for lots in master_lots):
        raise ValueError("every leg needs a positive number of master lots")
    divisor = reduce(gcd, master_lots)
    return tuple(lots // divisor for lots in master_lots), divisor


def margin_per_unit(*, group_margin: Decimal, master_units: int) -> Decimal:
    """Step 4, the master's figure: attributed margin / master units (shown and stored)."""
    return group_margin / master_units


def unit_margin(plan: GroupPlan, child: ChildProfile) -> Quotient:
    """Step 4 for one child, exact: its own basket-margin preflight figure when there is one,
    else the master's (group margin, master units), else the plan's figure as it stands."""
    if child.margin_per_unit is not None:
        return Quotient(child.margin_per_unit, ONE)
    if has_source_figures(plan):
        return Quotient(plan.attribution.group_margin, Decimal(plan.master_units))
    return Quotient(plan.margin_per_unit, ONE)


def unit_margin_shown(plan: GroupPlan, child: ChildProfile) -> Decimal:
    """The margin one unit needs, as a child below one unit is told it."""
    return plan.margin_per_unit if child.margin_per_unit is None else child.margin_per_unit


def unit_label(plan: GroupPlan) -> str:
    """'one lot' for a single leg of one lot a unit, else 'one unit'."""
    return "one lot" if len(plan.legs) == 1 and plan.unit_lots[0] == 1 else "one unit"
