"""Writing outcomes back (through `replication.services.outcomes`): mapping rows, their audit rows
and the accounts' engine state."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from brokers.errors import (
    TokenExpired,
)
from replication.clients import ClientCache
from replication.engine.sender.outcomes import ACCEPTED, Outcome
from replication.failpoints import failpoint
from replication.fanout import FanOut
from replication.lease import Lease
from replication.models import OrderMapping
from replication.ratelimit import LimiterRegistry
from replication.services.audit_log import AuditRow, audit_row_for
from replication.services.outcomes import outcomes_audit, outcomes_record

logger = logging.getLogger(__name__)


class WriteBack:
    """The send gate's state (lease, clients, limiters, pool) and its one way of writing outcomes:
    batched, in a lease-checked transaction, with their audit rows and the accounts' effects."""

    def __init__(
        self,
        *,
        lease: Lease,
        clients: ClientCache | None = None,
        limiters: LimiterRegistry | None = None,
        workers: int | None = None,
        now: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.lease = lease
        self.clients = clients or ClientCache()
        self.limiters = limiters or LimiterRegistry()
        self.fanout = FanOut(workers)
        self.now = now
        self.unknown_grace = timedelta(seconds=settings.UNKNOWN_GRACE_SECONDS)
        self.breaker_threshold = int(settings.BREAKER_THRESHOLD)

    # --- concurrency ---------------------------------------------------------------------------

    def _map(self, fn: Callable[[Any], list[Outcome]], items: Sequence[Any]) -> list[Outcome]:
        return self.fanout.map(fn, items)

    def close(self) -> None:
        self.fanout.close()

    # --- writing back --------------------------------------------------------------------------

    def _write_outcomes(self, outcomes: Sequence[Outcome], *, by_id: dict[int, OrderMapping]) -> None:
        if not outcomes:
            return
        now = self.now()
        updated: list[OrderMapping] = []
        needs_login: set[int] = set()
        failed_children: set[int] = set()
        ok_children: set[int] = set()
        # What each mapping was before this write: the audit rows say what changed (a fill, a
        # partial fill, a rejection), so they are built from the state before, not after.
        previous = {
            o.mapping_id: (by_id[o.mapping_id].status, by_id[o.mapping_id].filled_quantity) for o in outcomes
        }
        for o in outcomes:
            m = by_id[o.mapping_id]
            if isinstance(o.error, TokenExpired):
                needs_login.add(m.child_id)
            if o.status != m.status:
                if not m.can_move_to(o.status):
                    logger.error("refusing %s -> %s for %s", m.status, o.status, m.tag)
                    continue
                m.set_status(o.status)
            if o.broker_order_id:
                m.broker_order_id = o.broker_order_id
            if o.broker_status:
                m.broker_status = o.broker_status
            if o.filled_quantity is not None:
                m.filled_quantity = o.filled_quantity
            if o.average_price is not None:
                m.average_price = o.average_price
            if o.reason or o.reason_code:
                m.reason, m.reason_code = o.reason[:2000], o.reason_code
            if o.acked_at and not m.acked_at and o.status in ACCEPTED:
                m.acked_at = o.acked_at
                seen = m.allocation.master_seen_at
                m.latency_ms = max(0, int((o.acked_at - seen).total_seconds() * 1000))
            if m.is_final and not m.finished_at:
                m.finished_at = now
            if o.event in ("sent", "found_by_tag"):
                ok_children.add(m.child_id)
            elif o.event in ("send_failed", "send_rejected") and m.allocation.kind == "open":
                failed_children.add(m.child_id)
            updated.append(m)
        failpoint("before_ack_commit")
        outcomes_record(
            lease=self.lease,
            mappings=updated,
            events=self._audit_rows_for(outcomes, by_id, previous=previous),
            needs_login=needs_login,
            failed=failed_children - ok_children,
            ok=ok_children,
            breaker_threshold=self.breaker_threshold,
        )

    def _write_events(self, outcomes: Sequence[Outcome], by_id: dict[int, OrderMapping]) -> None:
        if not outcomes:
            return
        outcomes_audit(lease=self.lease, events=self._audit_rows_for(outcomes, by_id))

    def _audit_rows_for(
        self,
        outcomes: Sequence[Outcome],
        by_id: dict[int, OrderMapping],
        *,
        previous: dict[int, tuple[str, int]] | None = None,
    ) -> list[AuditRow]:
        """One unsaved audit row per outcome with an event. An order update is recorded when the status or
        the filled quantity moved (fills, partial fills, rejections, cancellations) or it says why;
        `previous` is each mapping's (status, filled quantity) before the write."""
        events = []
        for o in outcomes:
            m = by_id[o.mapping_id]
            before_status, before_filled = (previous or {}).get(o.mapping_id, (m.status, m.filled_quantity))
            if not o.event:
                continue
            if o.event == "order_update":
                filled_moved = o.filled_quantity is not None and o.filled_quantity != before_filled
                if o.status == before_status and not filled_moved and not o.reason:
                    continue
            data: dict[str, Any] = {
                "status": o.status,
                "broker_order_id": o.broker_order_id,
                "code": o.reason_code,
            }
            if o.status != before_status:
                data["previous_status"] = before_status
            if o.filled_quantity is not None:
                data["filled_quantity"] = o.filled_quantity
                if o.filled_quantity != before_filled:
                    data["previous_filled_quantity"] = before_filled
            if o.average_price is not None and o.filled_quantity:
                data["average_price"] = str(o.average_price)
            fill = (
                f" (filled {o.filled_quantity}/{m.quantity})"
                if o.filled_quantity is not None and o.filled_quantity != before_filled
                else ""
            )
            events.append(
                audit_row_for(
                    kind=o.event,
                    account_id=m.child_id,
                    allocation_id=m.allocation_id,
                    mapping_id=m.pk,
                    message=f"{m.tag} {m.side} {m.quantity} {m.exchange}:{m.tradingsymbol} -> {o.status}"
                    + fill
                    + (f": {o.reason}" if o.reason else ""),
                    data=data,
                )
            )
        return events
