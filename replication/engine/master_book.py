"""The engine's record of the master: its known orders and its positions after each tick's fills."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from accounts.models import Account
from brokers.types import Order, OrderStatus
from replication.engine.types import Positions
from replication.events import BookDiff, KnownOrder, note_type_changes
from replication.models import MasterOrder, MasterPosition, ReplicationEvent


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


def master_order_row(master: Account, o: Order, now: datetime) -> MasterOrder:
    return MasterOrder(
        account=master,
        broker_order_id=o.order_id,
        exchange=o.exchange,
        tradingsymbol=o.tradingsymbol,
        product=o.product.value,
        side=o.side.value,
        order_type=o.order_type.value,
        variety=o.variety,
        validity=o.validity.value,
        quantity=o.quantity,
        price=o.price,
        trigger_price=o.trigger_price,
        filled_quantity=o.filled_quantity,
        average_price=o.average_price,
        status=o.status.value,
        status_message=o.status_message[:255],
        tag=o.tag[:32],
        placed_at=o.placed_at,
        first_seen_at=now,
        filled_at=now if o.status == OrderStatus.COMPLETE else None,
    )


def upsert_master_orders(master: Account, diff: BookDiff, now: datetime) -> None:
    new = [
        master_order_row(master, o, now) for o in [*diff.new, *diff.rejected, *(o for o, _ in diff.ignored)]
    ]
    MasterOrder.objects.bulk_create(new, ignore_conflicts=True, batch_size=500)
    if not diff.changed:
        return
    rows = {
        mo.broker_order_id: mo
        for mo in MasterOrder.objects.filter(
            account=master, broker_order_id__in=[o.order_id for o in diff.changed]
        )
    }
    # An order-type change (LIMIT -> MARKET) is a modification; the known orders `diff_book`
    # compared carried no type, the stored rows do.
    note_type_changes(diff, {mo.broker_order_id: known_order(mo) for mo in rows.values()})
    for o in diff.changed:
        mo = rows[o.order_id]
        mo.order_type = o.order_type.value
        mo.quantity, mo.price, mo.trigger_price = o.quantity, o.price, o.trigger_price
        mo.filled_quantity, mo.average_price = o.filled_quantity, o.average_price
        mo.status, mo.status_message = o.status.value, o.status_message[:255]
        if o.status == OrderStatus.COMPLETE and mo.filled_at is None:
            mo.filled_at = now
    MasterOrder.objects.bulk_update(
        rows.values(),
        [
            "order_type",
            "quantity",
            "price",
            "trigger_price",
            "filled_quantity",
            "average_price",
            "status",
            "status_message",
            "filled_at",
            "updated_at",
        ],
    )


def store_master_positions(
    master: Account, after: Positions, stored: Positions, *, touch: bool = False
) -> None:
    """The master's positions after this tick's fills (inside the transaction that records
    the orders those fills belong to: the next tick adds only fills it has not seen).
    `touch`: every row is rewritten (a fresh reading: the rows hold for today)."""
    changed = {k: q for k, q in after.items() if k in stored and (touch or stored[k] != q)}
    for (exchange, symbol, product), quantity in changed.items():
        MasterPosition.objects.filter(
            account=master, exchange=exchange, tradingsymbol=symbol, product=product
        ).update(quantity=quantity, updated_at=timezone.now())
    MasterPosition.objects.bulk_create(
        [
            MasterPosition(account=master, exchange=k[0], tradingsymbol=k[1], product=k[2], quantity=q)
            for k, q in after.items()
            if k not in stored
        ],
        ignore_conflicts=True,
    )
