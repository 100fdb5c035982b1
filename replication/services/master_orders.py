"""The master's book as the engine records it: its orders and its positions after each tick's fills.

Both writers join the record stage's transaction (the caller opens it and checks the lease first):
a restart sees the orders as known *and* finds the allocations they caused, or neither.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from accounts.models import Account
from brokers.types import Order, OrderStatus
from replication.engine.master_book import known_order
from replication.engine.types import Positions
from replication.events import BookDiff, note_type_changes
from replication.models import MasterOrder, MasterPosition

_CHANGED_FIELDS = [
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
]


def master_order_row(master: Account, o: Order, now: datetime) -> MasterOrder:
    """An unsaved row for a master order first seen at `now`."""
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


def master_orders_record(*, master: Account, diff: BookDiff, now: datetime) -> None:
    """Insert the book's new orders and update the changed ones (notes type changes on `diff`).

    Called inside the record stage's transaction, after its lease check.
    """
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
    MasterOrder.objects.bulk_update(rows.values(), _CHANGED_FIELDS)


def master_positions_store(
    *, master: Account, after: Positions, stored: Positions, touch: bool = False
) -> None:
    """The master's positions after this tick's fills.

    Called inside the transaction that records the orders those fills belong to (the next tick adds
    only fills it has not seen). `touch`: every row is rewritten (a fresh reading: the rows hold for
    today).
    """
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
