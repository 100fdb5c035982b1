"""One child's share of an opening group (DESIGN §3.3), read top to bottom: capital, target,
available margin, whole units, caps, orders. Each step is one rule of its own module."""

from __future__ import annotations

from decimal import Decimal

from replication.sizing.caps import apply_caps
from replication.sizing.lots import leg_orders, whole_units
from replication.sizing.money import ZERO, exact, rupees
from replication.sizing.records import ChildEntry, ChildProfile, GroupPlan, Reason
from replication.sizing.target import available_target, exceeds_available, target_margin
from replication.sizing.units import unit_label, unit_margin, unit_margin_shown


def skipped(
    child: ChildProfile,
    capital: Decimal | None,
    target: Decimal,
    reason: Reason,
    message: str,
    caps: tuple[Reason, ...] = (),
) -> ChildEntry:
    """A child that gets nothing, and why."""
    return ChildEntry(child.child_id, 0, (), capital, target, reason, message, caps)


def size_entry(plan: GroupPlan, child: ChildProfile) -> ChildEntry:
    """Steps 3, 5 and 7 for one child: target margin, whole units, then the caps in order."""
    with exact():
        capital = child.capital()
        if capital is None:
            return skipped(child, None, ZERO, Reason.NO_CAPITAL, "no capital reading for this child yet")
        if capital <= 0:
            return skipped(child, capital, ZERO, Reason.NO_CAPITAL, f"capital is {rupees(capital)}")
        target = target_margin(plan, child, capital)
        caps: tuple[Reason, ...] = ()
        if exceeds_available(target, child):
            if child.available is not None and child.available <= 0:
                note = f"no available margin (share was {rupees(target.value())})"
                return skipped(child, capital, ZERO, Reason.NO_AVAILABLE_MARGIN, note)
            target, caps = available_target(child), (Reason.CAPPED_BY_AVAILABLE,)
        per_unit = unit_margin(plan, child)
        if per_unit.num <= 0:
            return skipped(
                child, capital, target.value(), Reason.BAD_INPUT, "margin per unit is not positive"
            )
        units = whole_units(target, per_unit)
        if units <= 0:
            needs = unit_margin_shown(plan, child)
            return ChildEntry(
                child.child_id,
                0,
                (),
                capital,
                target.value(),
                Reason.BELOW_ONE_UNIT,
                "",
                caps,
                needs,
                unit_label(plan),
            )
        if child.limits.any:
            capped = apply_caps(plan, child, units)
            caps = (*caps, *capped.caps)
            if capped.refused is not None:
                return skipped(child, capital, target.value(), *capped.refused, caps)
            units = capped.units
        if caps:
            note = "reduced by " + ", ".join(c.value for c in caps)
            return ChildEntry(
                child.child_id, units, leg_orders(plan, units), capital, target.value(), caps[-1], note, caps
            )
        return ChildEntry(child.child_id, units, leg_orders(plan, units), capital, target.value(), Reason.OK)
