"""The paper desk of DESIGN §3.6 for engine tests (shared with `manage.py demo`)."""

from __future__ import annotations

from decimal import Decimal

from brokers.paper.services import paper_price_set
from lab.demo import CALL, CHILDREN, FUT, Desk, build_desk

__all__ = ["CALL", "CHILDREN", "FUT", "Desk", "build_desk", "set_price"]


def set_price(symbol: str, price: str) -> None:
    paper_price_set(exchange="NFO", tradingsymbol=symbol, price=Decimal(price))
