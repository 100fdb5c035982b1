"""The fast path: `size_entry` for many children at once (every child of every event).

Same rules as `entry.size_entry`, proven equal by a property test
(tests/test_sizing_batch.py); written for speed: one loop with the plan's figures and the
module's constants bound to locals, enum members compared by identity, every record built with all
its fields through `tuple.__new__`, messages formatted only when read. A rule changes in its own
module first (`entry.py` and the modules it calls); this loop follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, localcontext

from replication.sizing.caps import apply_caps
from replication.sizing.entry import skipped as _zero
from replication.sizing.money import EXACT_DIGITS, ONE, ZERO, rupees
from replication.sizing.records import (
    NO_LIMITS,
    CapitalMode,
    ChildEntry,
    ChildProfile,
    GroupPlan,
    LegOrder,
    Reason,
)
from replication.sizing.slicing import slice_quantity


def size_entries(plan: GroupPlan, children: Iterable[ChildProfile]) -> list[ChildEntry]:
    """`size_entry` for every child, in order (equal to it child by child).

    Exact: a child's units are `floor(T / margin per unit)` with `T = ΔU × C_child × m / C_master`
    (or the child's available margin when that is less), worked out as one quotient of exact
    Decimal products and floored once, never from a rounded fraction (`lots.whole_units`).
    """
    group_margin = plan.attribution.group_margin
    master_capital = plan.master_capital
    master_units = plan.master_units
    plan_per_unit = plan.margin_per_unit
    # The target as a quotient tn / td and a unit's margin as pn / pd, so that nothing is rounded
    # before the one floor. Without the figures for that (a plan built from a stored fraction
    # only), the fraction itself is the numerator.
    exact = group_margin > 0 and master_capital > 0 and master_units > 0
    if exact:
        share, share_den = group_margin, master_capital
        plan_pn, plan_pd = group_margin, Decimal(master_units)
    else:
        share, share_den = plan.fraction, ONE
        plan_pn, plan_pd = plan_per_unit, ONE
    plan_den = share_den * plan_pn
    legs = [
        (i, leg.side, unit, leg.lot_size, leg.freeze_quantity or 0)
        for i, (leg, unit) in enumerate(zip(plan.legs, plan.unit_lots, strict=True))
    ]
    what = "one lot" if len(plan.legs) == 1 and plan.unit_lots[0] == 1 else "one unit"
    new, entry_type, order_type = _new, ChildEntry, LegOrder
    zero, one, no_limits = ZERO, ONE, NO_LIMITS
    fixed, available_mode = _FIXED, _AVAILABLE
    ok, below, capped_by_available = _OK, _BELOW_ONE_UNIT, _CAPPED_BY_AVAILABLE
    entries: list[ChildEntry] = []
    append = entries.append
    with localcontext() as ctx:
        ctx.prec = EXACT_DIGITS
        for child in children:
            mode = child.capital_mode
            available = child.available
            if mode is fixed:
                capital = child.fixed_capital
            elif available is None or child.used is None:
                capital = None
            elif mode is available_mode:
                capital = available
            else:
                capital = child.used + available
            if capital is None:
                append(_zero(child, None, zero, _NO_CAPITAL, "no capital reading for this child yet"))
                continue
            if capital <= zero:
                append(_zero(child, capital, zero, _NO_CAPITAL, f"capital is {rupees(capital)}"))
                continue
            tn = share * capital
            td = share_den
            multiplier = child.multiplier
            if multiplier is not one and multiplier != one:
                tn *= multiplier
            caps: tuple[Reason, ...] = ()
            if available is not None and tn > available * td:
                if available <= zero:
                    append(
                        _zero(
                            child,
                            capital,
                            zero,
                            _NO_AVAILABLE,
                            f"no available margin (share was {rupees(tn / td)})",
                        )
                    )
                    continue
                tn, td = available, one
                caps = (capped_by_available,)
            target = tn if td is one else tn / td
            # units = floor((tn / td) / (pn / pd)) = floor(num / den)
            if child.margin_per_unit is None:
                per_unit = plan_per_unit
                num = tn * plan_pd
                den = plan_pn if td is one else plan_den
            else:
                per_unit = child.margin_per_unit
                num, den = tn, (per_unit if td is one else td * per_unit)
            if den <= zero:
                append(_zero(child, capital, target, Reason.BAD_INPUT, "margin per unit is not positive"))
                continue
            # One floor, exact: correctly rounded division never lands below a whole number the
            # exact quotient reaches; it can land *on* one the exact quotient is a hair below, and
            # only then is the exact product checked.
            q = num / den
            units = int(q)
            if units == q and units * den > num:
                units -= 1
            if units <= 0:
                row = (child.child_id, 0, (), capital, target, below, "", caps, per_unit, what)
                append(new(entry_type, row))
                continue
            limits = child.limits
            if limits is not no_limits and limits.any:
                capped = apply_caps(plan, child, units)
                caps = (*caps, *capped.caps)
                if capped.refused is not None:
                    append(_zero(child, capital, target, *capped.refused, caps))
                    continue
                units = capped.units
            orders = []
            for i, side, unit, lot_size, freeze in legs:
                lots = units * unit
                quantity = lots * lot_size
                slices = (
                    (quantity,)
                    if not freeze or quantity <= freeze
                    else slice_quantity(quantity, lot_size, freeze)
                )
                orders.append(new(order_type, (i, side, lots, quantity, slices)))
            if caps:
                note = "reduced by " + ", ".join(c.value for c in caps)
                append(
                    new(
                        entry_type,
                        (
                            child.child_id,
                            units,
                            tuple(orders),
                            capital,
                            target,
                            caps[-1],
                            note,
                            caps,
                            None,
                            "one lot",
                        ),
                    )
                )
            else:
                append(
                    new(
                        entry_type,
                        (child.child_id, units, tuple(orders), capital, target, ok, "", (), None, "one lot"),
                    )
                )
    return entries


# The per-child records are built with every field given, through tuple.__new__: a NamedTuple's
# own constructor is a Python function (defaults, keywords) that costs more than the sizing.
_new = tuple.__new__
_FIXED = CapitalMode.FIXED
_AVAILABLE = CapitalMode.AVAILABLE
_OK = Reason.OK
_NO_CAPITAL = Reason.NO_CAPITAL
_NO_AVAILABLE = Reason.NO_AVAILABLE_MARGIN
_CAPPED_BY_AVAILABLE = Reason.CAPPED_BY_AVAILABLE
_BELOW_ONE_UNIT = Reason.BELOW_ONE_UNIT
