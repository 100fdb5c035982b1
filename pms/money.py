"""The ₹ formatter, once: Indian digit grouping (12,34,567.89), halves rounded up. Standard library
only, so every app (and the pure sizing core) may use it."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def rupees(amount: Decimal, *, places: int = 2, symbol: bool = True) -> str:
    """`amount` with Indian digit grouping and `places` decimals: 1500000 -> ₹15,00,000.00;
    `symbol=False` leaves out the ₹ (tables whose header says rupees)."""
    quantum = Decimal(1).scaleb(-places)
    rounded = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    whole, _, fraction = f"{abs(rounded):f}".partition(".")
    if len(whole) > 3:
        head, tail = whole[:-3], whole[-3:]
        groups: list[str] = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        if head:
            groups.insert(0, head)
        whole = ",".join([*groups, tail])
    return f"{sign}{'₹' if symbol else ''}{whole}" + (f".{fraction}" if fraction else "")
