"""Step 2 of DESIGN §3.3: the fraction of master capital, kept exact.

`f = attributed margin / C_m`. Sizing never multiplies a rounded fraction: it keeps the fraction
as a quotient of the figures it came from, and rounds once, at whole units (`lots.whole_units`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from replication.sizing.money import ONE
from replication.sizing.records import GroupPlan


class Quotient(NamedTuple):
    """An exact `num / den` (den > 0), divided only when a figure must be shown or stored."""

    num: Decimal
    den: Decimal

    def value(self) -> Decimal:
        return self.num if self.den == ONE else self.num / self.den


def fraction(*, group_margin: Decimal, master_capital: Decimal) -> Decimal:
    """f = the group's attributed margin / master capital (unrounded; `money.ratio` to show it)."""
    return group_margin / master_capital


def has_source_figures(plan: GroupPlan) -> bool:
    """Whether the plan carries the figures its fraction came from (margin, capital, units); a
    plan built from a stored fraction alone does not."""
    return plan.attribution.group_margin > 0 and plan.master_capital > 0 and plan.master_units > 0


def exact_fraction(plan: GroupPlan) -> Quotient:
    """f as the quotient (group margin, master capital), or (f, 1) without those figures."""
    if has_source_figures(plan):
        return Quotient(plan.attribution.group_margin, plan.master_capital)
    return Quotient(plan.fraction, ONE)
