"""Pure sizing rules (DESIGN §3.3 and §3.4). Standard library only; Decimal throughout.

Frozen dataclasses in; immutable records out (the per-child results are NamedTuples because
sizing runs for every child of every event and a frozen dataclass costs five times as much to
build — see `bench_fanout`). Every zero or reduced result carries a reason code
and a sentence a desk would understand. Nothing here reads the clock, the database or a broker.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, localcontext
from functools import reduce
from math import gcd
from typing import NamedTuple

ZERO = Decimal("0")
ONE = Decimal("1")
PAISE = Decimal("0.01")
RATIO_PLACES = Decimal("0.000000000001")
CALCULATOR_TOLERANCE = Decimal("0.5")  # ΔU more than 50% away from the calculator: use the calculator
# Digits for sizing arithmetic: products of a few rupee figures (capital × multiplier × units ×
# master capital) stay exact, so a quotient that is a whole number is never floored to one less.
EXACT_DIGITS = 40


def money(value: Decimal) -> Decimal:
    """The one rounding helper for rupee amounts shown or stored: paise, halves up."""
    return value.quantize(PAISE, rounding=ROUND_HALF_UP)


def ratio(value: Decimal) -> Decimal:
    """Fractions and exit ratios as stored and shown (12 places, truncated so they never overstate).

    For display only: sizing never multiplies a rounded fraction (see `size_entries`)."""
    return value.quantize(RATIO_PLACES, rounding=ROUND_DOWN)


def rupees(value: Decimal) -> str:
    """₹ with Indian digit grouping: 1500000 -> ₹15,00,000.00."""
    sign = "-" if value < 0 else ""
    whole, _, frac = f"{abs(money(value)):.2f}".partition(".")
    if len(whole) > 3:
        head, tail = whole[:-3], whole[-3:]
        groups: list[str] = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        if head:
            groups.insert(0, head)
        whole = ",".join([*groups, tail])
    return f"{sign}₹{whole}.{frac}"


class Reason(enum.StrEnum):
    OK = "ok"
    NO_CAPITAL = "no_capital"
    NO_AVAILABLE_MARGIN = "no_available_margin"
    CAPPED_BY_AVAILABLE = "capped_by_available"
    BELOW_ONE_UNIT = "below_one_unit"
    INSTRUMENT_NOT_ALLOWED = "instrument_not_allowed"
    INSTRUMENT_BLOCKED = "instrument_blocked"
    PRODUCT_NOT_ALLOWED = "product_not_allowed"
    MAX_LOTS = "max_lots_per_order"
    MAX_QUANTITY = "max_quantity"
    MAX_ORDER_VALUE = "max_order_value"
    MAX_OPEN_POSITIONS = "max_open_positions"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    NOTHING_HELD = "nothing_held"
    BAD_INPUT = "bad_input"


class CapitalMode(enum.StrEnum):
    TOTAL = "total"
    AVAILABLE = "available"
    FIXED = "fixed"


class MarginSource(enum.StrEnum):
    DELTA_U = "delta_u"
    CALCULATOR = "calculator"


# --- Opening events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One instrument of an opening group, as the master traded it."""

    exchange: str
    tradingsymbol: str
    product: str
    side: str  # "BUY" | "SELL"
    master_lots: int
    lot_size: int
    price: Decimal  # reference price for order value (the order's price, or LTP for MARKET)
    order_margin: Decimal = ZERO  # the broker calculator's margin for the master's order
    freeze_quantity: int | None = None

    @property
    def instrument(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


@dataclass(frozen=True, slots=True)
class Attribution:
    """How much master margin the group used, where the figure came from, and why."""

    group_margin: Decimal
    source: MarginSource
    reason: str
    leg_margins: tuple[Decimal, ...]


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """Group-level figures shared by every child: the fraction and one unit's shape and margin."""

    legs: tuple[Leg, ...]
    attribution: Attribution
    master_capital: Decimal
    fraction: Decimal
    unit_lots: tuple[int, ...]  # lots of each leg in one unit (smallest integer ratio)
    master_units: int
    margin_per_unit: Decimal


@dataclass(frozen=True, slots=True)
class ChildLimits:
    allowed_instruments: frozenset[str] = frozenset()  # "EXCHANGE:SYMBOL"; empty = all
    blocked_instruments: frozenset[str] = frozenset()
    allowed_products: frozenset[str] = frozenset()  # empty = all
    max_lots_per_order: int | None = None
    max_quantity: int | None = None
    max_order_value: Decimal | None = None
    max_open_positions: int | None = None
    daily_loss_limit: Decimal | None = None  # a positive rupee amount

    @property
    def any(self) -> bool:
        return self != NO_LIMITS_VALUE


NO_LIMITS = ChildLimits()
NO_LIMITS_VALUE = ChildLimits()


@dataclass(frozen=True, slots=True)
class ChildProfile:
    """What sizing needs to know about one child."""

    child_id: int
    capital_mode: CapitalMode = CapitalMode.TOTAL
    used: Decimal | None = None  # latest snapshot; None = no reading
    available: Decimal | None = None
    fixed_capital: Decimal | None = None
    multiplier: Decimal = ONE
    limits: ChildLimits = NO_LIMITS
    open_instruments: frozenset[str] = frozenset()  # instruments the child holds now
    day_pnl: Decimal = ZERO
    margin_per_unit: Decimal | None = None  # from the child's basket-margin preflight, if on

    def capital(self) -> Decimal | None:
        if self.capital_mode == CapitalMode.FIXED:
            return self.fixed_capital
        if self.used is None or self.available is None:
            return None
        if self.capital_mode == CapitalMode.AVAILABLE:
            return self.available
        return self.used + self.available


class LegOrder(NamedTuple):
    leg_index: int
    side: str
    lots: int
    quantity: int
    slices: tuple[int, ...]  # quantities, each within the freeze quantity, summing to quantity


class ChildEntry(NamedTuple):
    """One child's share of an opening group."""

    child_id: int
    units: int
    orders: tuple[LegOrder, ...]
    capital: Decimal | None
    target_margin: Decimal
    reason: Reason
    note: str = ""
    caps_hit: tuple[Reason, ...] = ()
    needs: Decimal | None = None  # margin for one unit, when the share was below it
    unit_label: str = "one lot"

    @property
    def message(self) -> str:
        """Why the result is zero or reduced, in words (formatted only when asked for)."""
        if self.reason == Reason.BELOW_ONE_UNIT and self.needs is not None:
            return f"needs {rupees(self.needs)} for {self.unit_label}, share is {rupees(self.target_margin)}"
        return self.note

    @property
    def total_lots(self) -> int:
        return sum(o.lots for o in self.orders)


def attribute_margin(
    *, delta_u: Decimal, leg_margins: Sequence[Decimal], group_estimate: Decimal | None = None
) -> Attribution:
    """Step 1: the group's margin is ΔU, shared by the legs in proportion to their own margins.

    `leg_margins` are the calculator's figures for each order alone; `group_estimate` is the
    calculator's figure for the legs together (a basket, with the hedge benefit), when known.
    ΔU ≤ 0 (a hedge that released margin) or ΔU more than 50% away from the calculator's figure
    for the group: use the calculator's figure and say why.
    """
    estimates = tuple(max(m, ZERO) for m in leg_margins)
    alone = sum(estimates, ZERO)
    calculator = alone if group_estimate is None or group_estimate <= 0 else group_estimate

    def shares(total: Decimal) -> tuple[Decimal, ...]:
        if len(estimates) == 1 or alone <= 0:
            return _split_evenly(total, len(estimates))
        return tuple(total * m / alone for m in estimates)

    if delta_u <= 0:
        if calculator <= 0:
            return Attribution(
                ZERO, MarginSource.CALCULATOR, "no margin change and no calculator figure", estimates
            )
        return Attribution(
            calculator,
            MarginSource.CALCULATOR,
            f"used margin did not rise (ΔU {rupees(delta_u)}); using the calculator's {rupees(calculator)}",
            shares(calculator),
        )
    if calculator > 0 and abs(delta_u - calculator) > calculator * CALCULATOR_TOLERANCE:
        return Attribution(
            calculator,
            MarginSource.CALCULATOR,
            f"ΔU {rupees(delta_u)} is more than 50% away from the calculator's {rupees(calculator)} "
            "(settlement lag or M2M noise); using the calculator",
            shares(calculator),
        )
    return Attribution(delta_u, MarginSource.DELTA_U, "rise in used margin across the tick", shares(delta_u))


def paise_shares(shares: Sequence[Decimal]) -> list[Decimal]:
    """Leg margins in paise (as stored) that sum exactly to the group's margin in paise: each leg
    rounded down, the last one takes the rest, so no paisa is lost or made between the legs."""
    if not shares:
        return []
    out = [s.quantize(PAISE, rounding=ROUND_DOWN) for s in shares[:-1]]
    out.append(money(sum(shares, ZERO)) - sum(out, ZERO))
    return out


def _split_evenly(total: Decimal, n: int) -> tuple[Decimal, ...]:
    return tuple(total / n for _ in range(n)) if n else ()


def unit_shape(master_lots: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """Step 6: the legs' lots reduced to their smallest integer ratio, and how many units the master holds."""
    if not master_lots or any(lots <= 0 for lots in master_lots):
        raise ValueError("every leg needs a positive number of master lots")
    divisor = reduce(gcd, master_lots)
    return tuple(lots // divisor for lots in master_lots), divisor


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
    margin_per_unit = attribution.group_margin / master_units
    return GroupPlan(
        legs=tuple(legs),
        attribution=attribution,
        master_capital=master_capital,
        fraction=attribution.group_margin / master_capital,
        unit_lots=unit,
        master_units=master_units,
        margin_per_unit=margin_per_unit,
    )


def slice_quantity(quantity: int, lot_size: int, freeze_quantity: int | None) -> tuple[int, ...]:
    """Split an order into whole-lot slices no larger than the exchange freeze quantity."""
    if quantity <= 0:
        return ()
    if not freeze_quantity or quantity <= freeze_quantity:
        return (quantity,)
    per_slice = (freeze_quantity // lot_size) * lot_size
    if per_slice <= 0:
        raise ValueError(f"freeze quantity {freeze_quantity} is below one lot of {lot_size}")
    full, rest = divmod(quantity, per_slice)
    return (per_slice,) * full + ((rest,) if rest else ())


def _zero(
    child: ChildProfile,
    capital: Decimal | None,
    target: Decimal,
    reason: Reason,
    message: str,
    caps: tuple[Reason, ...] = (),
) -> ChildEntry:
    return ChildEntry(child.child_id, 0, (), capital, target, reason, message, caps)


def size_entry(plan: GroupPlan, child: ChildProfile) -> ChildEntry:
    """Steps 3, 5 and 7 for one child: target margin, whole units, then the caps in order."""
    (entry,) = size_entries(plan, (child,))
    return entry


def size_entries(plan: GroupPlan, children: Iterable[ChildProfile]) -> list[ChildEntry]:
    """`size_entry` for every child, in order.

    Exact: a child's units are `floor(T / margin per unit)` with `T = ΔU × C_child × m / C_master`
    (or the child's available margin when that is less), worked out as one quotient of exact
    Decimal products and floored once, never from a rounded fraction. With the master's own margin
    per unit (`ΔU / master units`) ΔU cancels: `units = floor(master units × C_child × m / C_master)`,
    so a child with exactly k times the master's capital gets exactly k times its units.

    Written for speed (it runs for every child of every event): one loop with the plan's figures
    and the module's constants bound to locals, enum members compared by identity, every record
    built with all its fields through `tuple.__new__`, messages formatted only when read.
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
                cap_list = list(caps)
                units, blocked = _apply_caps(plan, child, units, cap_list)
                caps = tuple(cap_list)
                if blocked is not None:
                    append(_zero(child, capital, target, blocked[0], blocked[1], caps))
                    continue
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


def _apply_caps(
    plan: GroupPlan, child: ChildProfile, units: int, caps: list[Reason]
) -> tuple[int, tuple[Reason, str] | None]:
    """Caps of §3.3 step 7, in order. Returns the reduced units, or a blocking reason."""
    limits = child.limits
    for leg in plan.legs:
        if limits.allowed_instruments and leg.instrument not in limits.allowed_instruments:
            return 0, (
                Reason.INSTRUMENT_NOT_ALLOWED,
                f"{leg.instrument} is not in this child's allowed instruments",
            )
        if leg.instrument in limits.blocked_instruments:
            return 0, (Reason.INSTRUMENT_BLOCKED, f"{leg.instrument} is blocked for this child")
        if limits.allowed_products and leg.product not in limits.allowed_products:
            return 0, (Reason.PRODUCT_NOT_ALLOWED, f"product {leg.product} is not allowed for this child")

    def reduce_to(limit_units: int, reason: Reason, label: str) -> tuple[Reason, str] | None:
        nonlocal units
        if limit_units < units:
            units = limit_units
            caps.append(reason)
            if units <= 0:
                return reason, f"{label} allows less than one unit"
        return None

    for leg, unit_lots in zip(plan.legs, plan.unit_lots, strict=True):
        if limits.max_lots_per_order is not None:
            blocked = reduce_to(
                limits.max_lots_per_order // unit_lots,
                Reason.MAX_LOTS,
                f"max {limits.max_lots_per_order} lots per order",
            )
            if blocked:
                return 0, blocked
        if limits.max_quantity is not None:
            blocked = reduce_to(
                limits.max_quantity // (unit_lots * leg.lot_size),
                Reason.MAX_QUANTITY,
                f"max quantity {limits.max_quantity}",
            )
            if blocked:
                return 0, blocked
        if limits.max_order_value is not None:
            if leg.price <= 0:  # no price to judge the order's value by: fail closed, never send blind
                caps.append(Reason.MAX_ORDER_VALUE)
                return 0, (
                    Reason.MAX_ORDER_VALUE,
                    f"no price for {leg.instrument} to check the max order value "
                    f"{rupees(limits.max_order_value)} against (LTP unavailable)",
                )
            unit_value = leg.price * unit_lots * leg.lot_size
            blocked = reduce_to(
                int(limits.max_order_value // unit_value),
                Reason.MAX_ORDER_VALUE,
                f"max order value {rupees(limits.max_order_value)}",
            )
            if blocked:
                return 0, blocked
    if limits.max_open_positions is not None:
        new_instruments = {leg.instrument for leg in plan.legs} - child.open_instruments
        if len(child.open_instruments) + len(new_instruments) > limits.max_open_positions:
            caps.append(Reason.MAX_OPEN_POSITIONS)
            return 0, (
                Reason.MAX_OPEN_POSITIONS,
                f"would hold {len(child.open_instruments) + len(new_instruments)} positions, "
                f"limit {limits.max_open_positions}",
            )
    if limits.daily_loss_limit is not None and child.day_pnl <= -abs(limits.daily_loss_limit):
        caps.append(Reason.DAILY_LOSS_LIMIT)
        return 0, (
            Reason.DAILY_LOSS_LIMIT,
            f"today's loss {rupees(-child.day_pnl)} reached the limit "
            f"{rupees(abs(limits.daily_loss_limit))}; "
            "entries stop, exits continue",
        )
    return units, None


# --- Closing events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExitPlan:
    exit_ratio: Decimal
    master_flat: bool


class ChildExit(NamedTuple):
    child_id: int
    held_lots: int
    lots: int
    quantity: int
    slices: tuple[int, ...]
    reason: Reason
    message: str = ""


def plan_exit(*, closing_quantity: int, master_position_before: int) -> ExitPlan:
    """r = closing quantity / master position before (absolute values, 0 < r ≤ 1)."""
    before = abs(master_position_before)
    closing = abs(closing_quantity)
    if before == 0 or closing == 0:
        raise ValueError("a closing event needs a position and a closing quantity")
    if closing >= before:
        return ExitPlan(ONE, True)
    return ExitPlan(Decimal(closing) / Decimal(before), False)


def size_exit(
    plan: ExitPlan, *, child_id: int, held_quantity: int, lot_size: int, freeze_quantity: int | None = None
) -> ChildExit:
    """Child exit lots = round(r × held lots), halves up, never more than held; master flat → all."""
    held = abs(held_quantity)
    if lot_size <= 0:
        raise ValueError("lot size must be positive")
    held_lots = held // lot_size
    if held == 0:
        return ChildExit(child_id, 0, 0, 0, (), Reason.NOTHING_HELD, "holds nothing the engine placed here")
    if plan.master_flat:
        # Everything the engine placed, including an odd remainder below one lot.
        return ChildExit(
            child_id, held_lots, held_lots, held, slice_quantity(held, lot_size, freeze_quantity), Reason.OK
        )
    lots = int((plan.exit_ratio * held_lots).to_integral_value(rounding=ROUND_HALF_UP))
    lots = min(lots, held_lots)
    if lots <= 0:
        return ChildExit(
            child_id,
            held_lots,
            0,
            0,
            (),
            Reason.BELOW_ONE_UNIT,
            f"{plan.exit_ratio:.4f} of {held_lots} lots rounds to zero",
        )
    quantity = lots * lot_size
    return ChildExit(
        child_id, held_lots, lots, quantity, slice_quantity(quantity, lot_size, freeze_quantity), Reason.OK
    )
