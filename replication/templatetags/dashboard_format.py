"""Template filters of the staff dashboards: money in ₹ with Indian digit grouping (12,34,567)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

from pms.money import rupees

register = template.Library()


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


@register.filter
def inr(value: object, places: int = 0) -> str:
    """₹12,34,567 (places: decimals); – when there is no value."""
    amount = _decimal(value)
    return "–" if amount is None else rupees(amount, places=int(places))


@register.filter
def indian(value: object, places: int = 2) -> str:
    """12,34,567.50: a price or amount without the ₹ sign, Indian grouping."""
    amount = _decimal(value)
    return "–" if amount is None else rupees(amount, places=int(places), symbol=False)
