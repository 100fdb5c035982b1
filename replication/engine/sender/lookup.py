"""Follow-up and recovery: never send blindly; look an order up by tag first."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol, runtime_checkable

from accounts.crypto import CredentialDecryptError
from brokers.base import BrokerClient
from brokers.capabilities import OrderLookup
from brokers.errors import (
    BrokerError,
    TokenExpired,
)
from brokers.types import Order, OrderStatus
from replication.clients import CHILD_SECRETS
from replication.engine.sender.outcomes import MAX_SEND_ATTEMPTS, Outcome, changes, status_from_order
from replication.engine.sender.write_back import WriteBack
from replication.failpoints import failpoint
from replication.models import (
    MappingStatus,
    OrderMapping,
)

logger = logging.getLogger(__name__)


@runtime_checkable
class FindsByTag(Protocol):
    """A client that answers a query by tag (Dhan: GET /orders/external/{correlationId})."""

    def order_by_tag(self, tag: str) -> Order | None: ...


class LookUp(WriteBack):
    """Child orders read back from each child's book: open ones refreshed, unknown ones resolved."""

    # --- follow-up and recovery ----------------------------------------------------------------

    def follow_up(self, *, children: Iterable[int] | None = None, recover: bool = True) -> int:
        """Refresh non-final child orders from each child's order book; resolve unknown outcomes.

        Returns how many mappings changed.
        """
        statuses = [MappingStatus.OPEN]
        if recover:
            statuses += [MappingStatus.UNKNOWN, MappingStatus.SENDING]
        qs = (
            OrderMapping.objects.filter(status__in=statuses)
            .select_related("child", "allocation")
            .defer(*CHILD_SECRETS)
            .order_by("id")
        )
        if children is not None:
            qs = qs.filter(child_id__in=list(children))
        mappings = list(qs)
        if not mappings:
            return 0
        by_child: dict[int, list[OrderMapping]] = defaultdict(list)
        for m in mappings:
            by_child[m.child_id].append(m)
        self.clients.warm([ms[0].child for ms in by_child.values()])
        outcomes = self._map(self._look_up_child, list(by_child.values()))
        by_id = {m.pk: m for m in mappings}
        changed = [o for o in outcomes if changes(by_id[o.mapping_id], o)]
        self._write_outcomes(changed, by_id=by_id)
        return len(changed)

    def _look_up_child(self, mappings: list[OrderMapping]) -> list[Outcome]:
        child = mappings[0].child
        # The clock is read before any read: "absent" must mean absent from a book read at least
        # the grace period after the send, however long the reads themselves took.
        now = self.now()
        try:
            client = self.clients.get(child)
            asked = self._ask_by_tag(client, mappings)
            book: list[Order] | None = None
            if any(m.pk not in asked or self._may_be_absent(m, asked[m.pk], now) for m in mappings):
                book = client.orders()
        except (BrokerError, CredentialDecryptError) as exc:
            logger.warning("order book of child %s unavailable: %s", child.pk, exc)
            if isinstance(exc, TokenExpired):
                return [Outcome(mappings[0].pk, mappings[0].status, error=exc)]
            return []
        by_tag: dict[str, list[Order]] = defaultdict(list)
        by_id: dict[str, Order] = {}
        for entry in book or ():
            if entry.tag:
                by_tag[entry.tag].append(entry)
            by_id[entry.order_id] = entry
        outcomes = []
        for m in mappings:
            order: Order | None = asked.get(m.pk)
            if order is None and book is not None:
                order = by_id.get(m.broker_order_id) if m.broker_order_id else None
                if order is None:
                    found = by_tag.get(m.tag, [])
                    if len(found) > 1:
                        logger.error("tag %s has %d orders at the broker", m.tag, len(found))
                    order = found[0] if found else None
            if order is not None:
                outcomes.append(
                    Outcome(
                        m.pk,
                        status_from_order(order),
                        broker_order_id=order.order_id,
                        broker_status=order.status.value,
                        filled_quantity=order.filled_quantity,
                        average_price=order.average_price,
                        reason=order.status_message if order.status == OrderStatus.REJECTED else "",
                        reason_code="broker_rejected" if order.status == OrderStatus.REJECTED else "",
                        acked_at=m.acked_at or now,
                        event="found_by_tag" if m.status != MappingStatus.OPEN else "order_update",
                    )
                )
            elif m.status in (MappingStatus.UNKNOWN, MappingStatus.SENDING):
                # Absent only as proven by the book (a query by tag that found nothing is no proof:
                # Dhan answers 404 for an order still in TRANSIT) read the grace period after the send.
                if book is not None and self._past_grace(m, now):
                    if m.attempts >= MAX_SEND_ATTEMPTS:
                        outcomes.append(
                            Outcome(
                                m.pk,
                                MappingStatus.FAILED,
                                reason_code="absent",
                                reason=f"not at the broker after {m.attempts} attempts",
                                event="send_failed",
                            )
                        )
                    else:
                        outcomes.append(
                            Outcome(
                                m.pk,
                                MappingStatus.PLANNED,
                                reason_code="absent",
                                reason="not in the child's order book: proven absent, will send again",
                                event="absent_resend",
                            )
                        )
                elif m.status == MappingStatus.SENDING:
                    outcomes.append(
                        Outcome(
                            m.pk,
                            MappingStatus.UNKNOWN,
                            reason_code="crash_recovery",
                            reason="claimed for sending before a restart; looking it up by tag",
                            event="recovered_unknown",
                        )
                    )
        failpoint("mid_reconciliation")
        return outcomes

    def _past_grace(self, m: OrderMapping, now: datetime) -> bool:
        return now - (m.sent_at or m.created_at) >= self.unknown_grace

    def _may_be_absent(self, m: OrderMapping, found: Order | None, now: datetime) -> bool:
        """Whether only the book can settle this mapping: its tag was not found by the query and
        the grace period is over (absence is proven by the book alone)."""
        return found is None and self._past_grace(m, now)

    @staticmethod
    def _ask_by_tag(client: BrokerClient, mappings: list[OrderMapping]) -> dict[int, Order | None]:
        """Unknown outcomes asked for one by one where the broker answers a query by tag
        (capabilities `OrderLookup.BY_TAG` and an `order_by_tag`); {} for a book-scan broker.
        Mappings open at the broker are refreshed from its book as before."""
        capabilities = getattr(client, "capabilities", None)
        if not isinstance(client, FindsByTag) or capabilities is None:
            return {}
        if capabilities.order_lookup is not OrderLookup.BY_TAG:
            return {}
        return {
            m.pk: client.order_by_tag(m.tag)
            for m in mappings
            if m.status in (MappingStatus.UNKNOWN, MappingStatus.SENDING) and m.tag
        }
