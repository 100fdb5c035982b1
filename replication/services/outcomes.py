"""Outcomes: what became of intents sent to (or held back from) a broker, written after the calls,
and the updates brokers push to us (postbacks) applied to the intents they name.

No broker call happens here: the send gate calls the brokers outside any transaction, then writes
what they answered through these services.

Pushed updates are hints that arrive at least once and in any order; polling (the send gate's
follow-up) stays the source of truth. So an update only ever moves a mapping forward: a status
change must be allowed by `OrderMapping.TRANSITIONS` (a final mapping never changes again), the
filled quantity never goes down, and a duplicate changes nothing and writes no event. Mappings
being sent right now (PLANNED, SENDING) belong to the send gate and are left alone; the update is
picked up by the next poll. A postback arrives outside the leader's tick: no lease to check.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from brokers.types import Order
from replication.bulk import update_rows
from replication.engine.sender.outcomes import status_from_order
from replication.lease import Lease, lease_check
from replication.models import EventKind, MappingStatus, OrderMapping, ReplicationEvent
from replication.services.accounts import accounts_mark_needs_login, accounts_record_send_results
from replication.services.audit_log import AuditRow, audit, audit_rows

logger = logging.getLogger(__name__)

OUTCOME_FIELDS = (
    "status",
    "broker_order_id",
    "broker_status",
    "filled_quantity",
    "average_price",
    "reason",
    "reason_code",
    "acked_at",
    "latency_ms",
    "finished_at",
    "updated_at",
)


def outcomes_record(
    *,
    lease: Lease,
    mappings: Sequence[OrderMapping],
    events: Sequence[ReplicationEvent | AuditRow],
    needs_login: Collection[int],
    failed: Collection[int],
    ok: Collection[int],
    breaker_threshold: int,
) -> None:
    """In one lease-checked transaction: the intents' new state (`mappings`, changed in memory),
    their audit rows (`events`, unsaved) and the accounts' engine state — `needs_login` children
    move to NEEDS_LOGIN, `failed`/`ok` count towards or reset the breaker."""
    with transaction.atomic():
        lease_check(lease)
        update_rows(mappings, OUTCOME_FIELDS)
        audit_rows(events)
        if needs_login:
            accounts_mark_needs_login(
                lease=lease,
                account_ids=sorted(needs_login),
                reason="broker session expired; the child is skipped until it logs in again",
            )
        if ok or failed:
            accounts_record_send_results(
                lease=lease, ok=ok, failed=failed, breaker_threshold=breaker_threshold
            )


def outcomes_hold(*, mappings: Sequence[OrderMapping], events: Sequence[ReplicationEvent | AuditRow]) -> None:
    """Intents the send gate stopped at send time (status, reason, finished_at set in memory) and
    their audit rows. Called inside the claim's transaction (`intents_claim`'s caller checked the lease)."""
    update_rows(mappings, ["status", "reason", "reason_code", "finished_at", "updated_at"])
    audit_rows(events)


def outcomes_audit(*, lease: Lease, events: Sequence[ReplicationEvent | AuditRow]) -> None:
    """Audit rows of broker calls that changed no intent row (cancels sent or failed, held), in a
    lease-checked transaction."""
    with transaction.atomic():
        lease_check(lease)
        audit_rows(events)


def outcomes_modified(
    *, lease: Lease, mappings: Sequence[OrderMapping], events: Sequence[ReplicationEvent | AuditRow]
) -> None:
    """Open intents whose modification the broker took (order type, prices, quantity changed in
    memory) and the audit rows of every modification tried, in one lease-checked transaction."""
    with transaction.atomic():
        lease_check(lease)
        update_rows(mappings, ["order_type", "price", "trigger_price", "quantity", "lots", "updated_at"])
        audit_rows(events)


# Mappings a pushed update may touch: acknowledged, or sent with an unknown outcome.
UPDATABLE = frozenset({MappingStatus.OPEN, MappingStatus.UNKNOWN})
ACCEPTED = frozenset({MappingStatus.OPEN, MappingStatus.FILLED})


def _mapping_find(order: Order, child: Account | None) -> OrderMapping | None:
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
        mapping = _mapping_find(order, child)
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
