"""Orders above the exchange freeze quantity (or a child's per-order caps) go out in whole-lot slices."""

from __future__ import annotations

from decimal import Decimal

from replication.sizing.records import ChildLimits


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


def exit_order_limit(
    lot_size: int, freeze_quantity: int | None, limits: ChildLimits, price: Decimal | None
) -> int | None:
    """The largest single exit order: within the freeze quantity, max lots per order, max quantity
    and max order value (at `price`), in whole lots. A cap below one lot cannot stop an exit: such
    a child exits one lot per order. None: no limit."""
    per_order: list[int] = [freeze_quantity] if freeze_quantity else []
    if limits.max_lots_per_order is not None:
        per_order.append(max(limits.max_lots_per_order, 1) * lot_size)
    if limits.max_quantity is not None:
        per_order.append(max(limits.max_quantity // lot_size, 1) * lot_size)
    if limits.max_order_value is not None and price:
        per_order.append(max(int(limits.max_order_value // (price * lot_size)), 1) * lot_size)
    return min(per_order) if per_order else None


def exit_slices(
    quantity: int, lot_size: int, freeze_quantity: int | None, limits: ChildLimits, price: Decimal | None
) -> tuple[int, ...]:
    """An exit is never reduced by a child's caps (exits continue), but no single order may be
    above them: it goes out in whole-lot slices within `exit_order_limit` (DESIGN §3.7)."""
    return slice_quantity(quantity, lot_size, exit_order_limit(lot_size, freeze_quantity, limits, price))
