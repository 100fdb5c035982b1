"""Broker order updates pushed to us (Kite postbacks) applied to child order mappings.

Pushed updates are hints that arrive at least once and in any order; polling (the replicator's
follow-up) stays the source of truth. So an update only ever moves a mapping forward: a status
change must be allowed by `OrderMapping.TRANSITIONS` (a final mapping never changes again), the
filled quantity never goes down, and a duplicate changes nothing and writes no event.

Mappings being sent right now (PLANNED, SENDING) belong to the replicator and are left alone; the
update is picked up by the next poll.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from brokers.types import Order
from replication.models import MappingStatus, OrderMapping
from replication.replicator import status_from_order
from replication.services.audit_log import EventKind, audit

logger = logging.getLogger(__name__)

# Mappings a pushed update may touch: acknowledged, or sent with an unknown outcome.
UPDATABLE = frozenset({MappingStatus.OPEN, MappingStatus.UNKNOWN})
ACCEPTED = frozenset({MappingStatus.OPEN, MappingStatus.FILLED})


def _find(order: Order, child: Account | None) -> OrderMapping | None:
    mappings = OrderMapping.objects.select_for_update().select_related("allocation")
    if child is not None:
        mappings = mappings.filter(child=child)
    mapping = mappings.filter(broker_order_id=order.order_id).first() if order.order_id else None
    if mapping is None and order.tag:
        mapping = mappings.filter(tag=order.tag).first()
    return mapping


def mapping_apply_broker_update(
    *, order: Order, source: str, child: Account | None = None
) -> OrderMapping | None:
    """Apply one pushed order update to its mapping (found by broker order id, else by tag).

    `child` narrows the search to that account's mappings. Returns None when no mapping matches
    (e.g. an order placed outside the engine), else the mapping, changed or not. A change is
    saved together with a `ReplicationEvent` (kind "order_update", `data.source` = `source`).
    """
    now = timezone.now()
    with transaction.atomic():
        mapping = _find(order, child)
        if mapping is None:
            return None
        if mapping.status not in UPDATABLE:
            return mapping
        if mapping.broker_order_id and mapping.broker_order_id != order.order_id:
            logger.error(
                "update for order %s carries tag %s, which maps to order %s: ignored",
                order.order_id,
                mapping.tag,
                mapping.broker_order_id,
            )
            return mapping
        before = (mapping.status, mapping.filled_quantity)
        fields: set[str] = set()
        new_status = status_from_order(order)
        if new_status != mapping.status and mapping.can_move_to(new_status):
            mapping.set_status(new_status)
            fields.add("status")
            if new_status == MappingStatus.REJECTED:
                mapping.reason = order.status_message[:2000] or "rejected by the broker"
                mapping.reason_code = "broker_rejected"
                fields |= {"reason", "reason_code"}
        if order.filled_quantity > mapping.filled_quantity:
            mapping.filled_quantity = order.filled_quantity
            fields.add("filled_quantity")
            if order.average_price > 0:
                mapping.average_price = order.average_price
                fields.add("average_price")
        if not fields:
            return mapping  # a duplicate, or an older update than what we know
        mapping.broker_status = order.status.value
        fields.add("broker_status")
        if not mapping.broker_order_id:
            mapping.broker_order_id = order.order_id
            fields.add("broker_order_id")
        if mapping.status in ACCEPTED and mapping.acked_at is None:
            mapping.acked_at = order.placed_at or now
            seen = mapping.allocation.master_seen_at
            mapping.latency_ms = max(0, int((mapping.acked_at - seen).total_seconds() * 1000))
            fields |= {"acked_at", "latency_ms"}
        if mapping.is_final and mapping.finished_at is None:
            mapping.finished_at = now
            fields.add("finished_at")
        mapping.save(update_fields=[*sorted(fields), "updated_at"])
        audit(
            kind=EventKind.ORDER_UPDATE,
            account_id=mapping.child_id,
            allocation_id=mapping.allocation_id,
            mapping=mapping,
            message=(
                f"{mapping.tag} {mapping.side} {mapping.quantity} {mapping.exchange}:{mapping.tradingsymbol} "
                f"-> {mapping.status}, filled {mapping.filled_quantity} ({source})"
            ),
            data={
                "source": source,
                "status": mapping.status,
                "status_before": before[0],
                "filled_quantity": mapping.filled_quantity,
                "filled_before": before[1],
                "broker_order_id": mapping.broker_order_id,
                "broker_status": order.status.value,
            },
        )
    logger.info("order %s of mapping %s -> %s (%s)", order.order_id, mapping.tag, mapping.status, source)
    return mapping
