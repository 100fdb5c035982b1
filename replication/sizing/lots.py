"""Step 5 of DESIGN §3.3: whole units, floored once, and the lots and quantity of each leg."""

from __future__ import annotations

from replication.sizing.fraction import Quotient
from replication.sizing.records import GroupPlan, LegOrder
from replication.sizing.slicing import slice_quantity


def whole_units(target: Quotient, per_unit: Quotient) -> int:
    """floor(T / margin per unit), the one rounding of sizing, exact.

    With T = tn / td and a unit's margin pn / pd: floor((tn × pd) / (td × pn)). Correctly rounded
    division never lands below a whole number the exact quotient reaches; it can land *on* one
    the exact quotient is a hair below, and only then is the exact product checked. With the
    master's own margin per unit (ΔU / master units) ΔU cancels, so a child with exactly k times
    the master's capital gets exactly k times its units.
    """
    num = target.num * per_unit.den
    den = target.den * per_unit.num
    q = num / den
    units = int(q)
    if units == q and units * den > num:
        units -= 1
    return units


def leg_orders(plan: GroupPlan, units: int) -> tuple[LegOrder, ...]:
    """Each leg's order for `units` whole units: lots = units × the leg's lots in one unit,
    quantity = lots × lot size, sliced within the freeze quantity."""
    orders = []
    for i, (leg, unit) in enumerate(zip(plan.legs, plan.unit_lots, strict=True)):
        lots = units * unit
        quantity = lots * leg.lot_size
        orders.append(
            LegOrder(i, leg.side, lots, quantity, slice_quantity(quantity, leg.lot_size, leg.freeze_quantity))
        )
    return tuple(orders)
