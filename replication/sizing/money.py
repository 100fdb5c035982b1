"""Money and ratio figures: the one rounding helper, display ratios and the ₹ formatter.

Sizing works on unrounded `Decimal`s; these round only what is stored or shown.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal, localcontext

from pms.money import rupees as format_rupees  # standard library only, like sizing

ZERO = Decimal("0")
ONE = Decimal("1")
PAISE = Decimal("0.01")
RATIO_PLACES = Decimal("0.000000000001")
CALCULATOR_TOLERANCE = Decimal("0.5")  # ΔU more than 50% away from the calculator: use the calculator
# Digits for sizing arithmetic: products of a few rupee figures (capital × multiplier × units ×
# master capital) stay exact, so a quotient that is a whole number is never floored to one less.
EXACT_DIGITS = 40


def exact() -> AbstractContextManager[Context]:
    """The arithmetic context sizing runs in (`EXACT_DIGITS` digits)."""
    return localcontext(prec=EXACT_DIGITS)


def money(value: Decimal) -> Decimal:
    """The one rounding helper for rupee amounts shown or stored: paise, halves up."""
    return value.quantize(PAISE, rounding=ROUND_HALF_UP)


def ratio(value: Decimal) -> Decimal:
    """Fractions and exit ratios as stored and shown (12 places, truncated so they never overstate).

    For display only: sizing never multiplies a rounded fraction (see `size_entry`)."""
    return value.quantize(RATIO_PLACES, rounding=ROUND_DOWN)


def rupees(value: Decimal) -> str:
    """₹ with Indian digit grouping: 1500000 -> ₹15,00,000.00 (the one formatter, `pms.money`)."""
    return format_rupees(value)
