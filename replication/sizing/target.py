"""Step 3 of DESIGN §3.3: the child's target margin, never more than its available margin.

The child's capital C_c per its capital mode is `ChildProfile.capital()`.
"""

from __future__ import annotations

from decimal import Decimal

from replication.sizing.fraction import Quotient, exact_fraction
from replication.sizing.money import ONE
from replication.sizing.records import ChildProfile, GroupPlan


def target_margin(plan: GroupPlan, child: ChildProfile, capital: Decimal) -> Quotient:
    """T = f × C_c × multiplier, as an exact quotient."""
    f = exact_fraction(plan)
    return Quotient(f.num * capital * child.multiplier, f.den)


def exceeds_available(target: Quotient, child: ChildProfile) -> bool:
    """Whether T is more than the child's available margin A_c (known only with a reading)."""
    return child.available is not None and target.num > child.available * target.den


def available_target(child: ChildProfile) -> Quotient:
    """T cut to the child's available margin."""
    assert child.available is not None  # only when `exceeds_available`
    return Quotient(child.available, ONE)
