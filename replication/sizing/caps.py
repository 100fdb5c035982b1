"""Step 7 of DESIGN §3.3: a child's caps, in order. A cap reduces units when it can and says which bit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from replication.sizing.money import rupees
from replication.sizing.records import ChildLimits, ChildProfile, GroupPlan, Leg, Reason

Refusal = tuple[Reason, str]


class OrderLimit(NamedTuple):
    """A per-order cap as whole units of the group, and what to say when it allows none."""

    units: int
    reason: Reason
    refusal: str


class Capped(NamedTuple):
    units: int
    caps: tuple[Reason, ...]  # every cap that bit, in order
    refused: Refusal | None  # set when the caps allow no unit at all


def filter_match(entries: frozenset[str], leg: Leg) -> str | None:
    """The first filter entry (in sorted order) naming the leg, or None. An entry `E` names it when,
    with `where, sep, name = E.partition(":")`, `where` is the leg's exchange (or there is no
    exchange) and `name` is its trading symbol or its underlying: "NFO:NIFTY25DECFUT" one contract,
    "NFO:NIFTY" or "NIFTY" every NIFTY future and option (`brokers.instruments.matches_filter`'s
    rule; sizing stays standard-library only)."""
    exchange, symbol, underlying = leg.exchange.upper(), leg.tradingsymbol.upper(), leg.underlying.upper()
    for entry in sorted(entries):
        where, sep, name = entry.strip().upper().partition(":")
        if not sep:
            where, name = "", where
        if (not where or where == exchange) and name and name in (symbol, underlying):
            return entry
    return None


def instrument_refusal(plan: GroupPlan, limits: ChildLimits) -> Refusal | None:
    """Allowed and blocked instruments (a contract or an underlying), allowed products: any leg
    outside them refuses the group. Entries only: exits are never filtered."""
    for leg in plan.legs:
        if limits.allowed_instruments and filter_match(limits.allowed_instruments, leg) is None:
            return (
                Reason.INSTRUMENT_NOT_ALLOWED,
                f"{leg.instrument} is not in this child's allowed instruments",
            )
        blocked = filter_match(limits.blocked_instruments, leg)
        if blocked is not None:
            by = "" if blocked == leg.instrument else f" ({blocked})"
            return Reason.INSTRUMENT_BLOCKED, f"{leg.instrument} is blocked for this child{by}"
        if limits.allowed_products and leg.product not in limits.allowed_products:
            return Reason.PRODUCT_NOT_ALLOWED, f"product {leg.product} is not allowed for this child"
    return None


def order_limits(leg: Leg, unit_lots: int, limits: ChildLimits) -> Iterator[OrderLimit]:
    """Max lots per order, max quantity, max order value (at the leg's reference price), in that
    order, as units. No price to judge the order's value by: fail closed (no unit), never send blind."""
    if limits.max_lots_per_order is not None:
        yield OrderLimit(
            limits.max_lots_per_order // unit_lots,
            Reason.MAX_LOTS,
            f"max {limits.max_lots_per_order} lots per order allows less than one unit",
        )
    if limits.max_quantity is not None:
        yield OrderLimit(
            limits.max_quantity // (unit_lots * leg.lot_size),
            Reason.MAX_QUANTITY,
            f"max quantity {limits.max_quantity} allows less than one unit",
        )
    if limits.max_order_value is not None:
        if leg.price <= 0:
            yield OrderLimit(
                0,
                Reason.MAX_ORDER_VALUE,
                f"no price for {leg.instrument} to check the max order value "
                f"{rupees(limits.max_order_value)} against (LTP unavailable)",
            )
            return
        unit_value = leg.price * unit_lots * leg.lot_size
        yield OrderLimit(
            int(limits.max_order_value // unit_value),
            Reason.MAX_ORDER_VALUE,
            f"max order value {rupees(limits.max_order_value)} allows less than one unit",
        )


def open_positions_refusal(plan: GroupPlan, child: ChildProfile) -> Refusal | None:
    """Max open positions: the group may not take the child above it."""
    limit = child.limits.max_open_positions
    if limit is None:
        return None
    new_instruments = {leg.instrument for leg in plan.legs} - child.open_instruments
    holding = len(child.open_instruments) + len(new_instruments)
    if holding > limit:
        return Reason.MAX_OPEN_POSITIONS, f"would hold {holding} positions, limit {limit}"
    return None


def daily_loss_refusal(child: ChildProfile) -> Refusal | None:
    """Daily loss limit: once today's loss reaches it, entries stop (exits continue)."""
    limit = child.limits.daily_loss_limit
    if limit is None or child.day_pnl > -abs(limit):
        return None
    return (
        Reason.DAILY_LOSS_LIMIT,
        f"today's loss {rupees(-child.day_pnl)} reached the limit {rupees(abs(limit))}; "
        "entries stop, exits continue",
    )


def apply_caps(plan: GroupPlan, child: ChildProfile, units: int) -> Capped:
    """The caps of §3.3 step 7 in order: instruments and products, per-order caps of each leg,
    open positions, daily loss. Returns the reduced units and the caps that bit, or a refusal."""
    limits = child.limits
    refused = instrument_refusal(plan, limits)
    if refused is not None:
        return Capped(0, (), refused)
    caps: list[Reason] = []
    for leg, unit_lots in zip(plan.legs, plan.unit_lots, strict=True):
        for limit in order_limits(leg, unit_lots, limits):
            if limit.units < units:
                units = limit.units
                caps.append(limit.reason)
                if units <= 0:
                    return Capped(0, tuple(caps), (limit.reason, limit.refusal))
    for refused in (open_positions_refusal(plan, child), daily_loss_refusal(child)):
        if refused is not None:
            return Capped(0, (*caps, refused[0]), refused)
    return Capped(units, tuple(caps), None)
