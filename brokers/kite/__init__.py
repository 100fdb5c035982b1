"""Zerodha Kite adapter: the only package that imports kiteconnect (DESIGN §5, kite/API.md)."""

from brokers.kite.client import KiteBroker

__all__ = ["KiteBroker"]
