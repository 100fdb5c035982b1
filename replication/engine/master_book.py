"""The engine's reads of its record of the master: its known orders, its positions, when it became master.

The rows are written by `replication.services.master_orders`."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from accounts.models import Account
from brokers.types import Order
from replication.engine.types import Positions
from replication.events import KnownOrder
from replication.models import MasterOrder, MasterPosition, ReplicationEvent

IST = ZoneInfo("Asia/Kolkata")  # the exchange's trading day


def known_order(mo: MasterOrder) -> KnownOrder:
    """What the engine recorded about a master order, as the book diff compares it."""
    return KnownOrder(
        mo.broker_order_id,
        mo.quantity,
        mo.price,
        mo.trigger_price,
        mo.filled_quantity,
        mo.status,
        mo.order_type,
    )


def known_orders(master: Account, book: list[Order]) -> dict[str, KnownOrder]:
    """The recorded master orders among those in this book, by broker order id."""
    return {
        mo.broker_order_id: known_order(mo)
        for mo in MasterOrder.objects.filter(account=master, broker_order_id__in=[o.order_id for o in book])
    }


def moved(start: Positions, *deltas: Positions) -> Positions:
    out = dict(start)
    for delta in deltas:
        for key, qty in delta.items():
            out[key] = out.get(key, 0) + qty
    return out


def master_since(master: Account) -> datetime | None:
    """When `master` last became master (its promotion's audit row), or None."""
    return (
        ReplicationEvent.objects.filter(kind="account.master_promoted", account=master)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)
        .first()
    )


def stored_positions(master: Account, now: datetime) -> tuple[Positions, Positions]:
    """The master's stored positions, and the same if they hold for today (else empty).

    Stored positions hold for the trading day they were written on: the broker's book starts
    afresh each day, so what no book showed (the engine down across a day, an expiry) is
    caught by the day's first event reading the positions again."""
    rows = list(MasterPosition.objects.filter(account=master))
    existing = {(mp.exchange, mp.tradingsymbol, mp.product): mp.quantity for mp in rows}
    today = now.astimezone(IST).date()
    fresh = bool(rows) and max(mp.updated_at for mp in rows).astimezone(IST).date() == today
    return existing, (existing if fresh else {})
