"""Splitting an order above the exchange freeze quantity into slices (vendor neutral, pure).

Kite has no API for freeze quantities (kite/API.md §3): the caller supplies the figure. Here
`freeze_quantity` is the largest quantity one order may carry; a slice never exceeds it and is
always a whole number of lots.
"""

from __future__ import annotations


def slice_quantity(quantity: int, lot_size: int, freeze_quantity: int | None) -> list[int]:
    """Split `quantity` units into orders of whole lots, none above `freeze_quantity`.

    Full slices come first and the remainder last (the order Kite's autoslice uses), so
    `sum(result) == quantity`. No freeze quantity means one order. A zero quantity gives no orders.
    """
    if quantity < 0:
        raise ValueError(f"quantity must not be negative, got {quantity}")
    if lot_size <= 0:
        raise ValueError(f"lot_size must be positive, got {lot_size}")
    if quantity % lot_size:
        raise ValueError(f"quantity {quantity} is not a whole number of lots of {lot_size}")
    if quantity == 0:
        return []
    if freeze_quantity is None:
        return [quantity]
    max_lots = freeze_quantity // lot_size
    if max_lots < 1:
        raise ValueError(f"freeze quantity {freeze_quantity} is below one lot of {lot_size}")
    max_slice = max_lots * lot_size
    full, remainder = divmod(quantity, max_slice)
    return [max_slice] * full + ([remainder] if remainder else [])
