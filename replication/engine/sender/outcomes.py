"""What a send or a look-up yields for each intent, and the report of a dispatch (DESIGN §4.2)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    InputRejected,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    TokenExpired,
)
from brokers.types import Order, OrderRequest, OrderStatus, OrderType, Product, Side, Validity
from replication.models import (
    MappingStatus,
    OrderMapping,
)

logger = logging.getLogger(__name__)

ACCEPTED = frozenset({MappingStatus.OPEN, MappingStatus.FILLED})
NOT_ACCEPTED = frozenset(
    {
        MappingStatus.REJECTED,
        MappingStatus.FAILED,
        MappingStatus.CANCELLED,
        MappingStatus.SKIPPED,
        MappingStatus.DRY_RUN,
    }
)
MAX_SEND_ATTEMPTS = 3

# What sending and writing back need: loading only these keeps a thousand-child dispatch cheap.
MAPPING_FIELDS = (
    "allocation",
    "child",
    "slice_no",
    "wave",
    "tag",
    "status",
    "exchange",
    "tradingsymbol",
    "product",
    "side",
    "order_type",
    "validity",
    "price",
    "trigger_price",
    "lots",
    "quantity",
    "reason_code",
    "reason",
    "broker_order_id",
    "broker_status",
    "filled_quantity",
    "average_price",
    "attempts",
    "epoch",
    "created_at",
    "sent_at",
    "acked_at",
    "finished_at",
    "latency_ms",
    "updated_at",
)
SEND_FIELDS = (
    *MAPPING_FIELDS,
    *(f"child__{name}" for name in ("broker", "broker_user_id", "proxy_url", "updated_at", "status")),
    *(f"allocation__{name}" for name in ("kind", "group_key", "master_seen_at", "status")),
)


@dataclass(frozen=True, slots=True)
class Shard:
    """Children whose id mod `count` is `index`."""

    index: int
    count: int


@dataclass(slots=True)
class Outcome:
    """What happened to one mapping during a send or a look-up (computed off the database)."""

    mapping_id: int
    status: str
    broker_order_id: str = ""
    broker_status: str = ""
    filled_quantity: int | None = None
    average_price: Decimal | None = None
    reason_code: str = ""
    reason: str = ""
    acked_at: datetime | None = None
    event: str = ""
    error: BrokerError | None = None


@dataclass(slots=True)
class DispatchReport:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0
    latencies_ms: list[int] = field(default_factory=list)
    send_started: float | None = None
    last_send_done: float | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)

    def merge(self, other: DispatchReport) -> None:
        self.sent += other.sent
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.failed += other.failed
        self.unknown += other.unknown
        self.deferred += other.deferred
        self.latencies_ms.extend(other.latencies_ms)
        for name, ms in other.phases_ms.items():
            self.phases_ms[name] = self.phases_ms.get(name, 0.0) + ms
        if other.send_started is not None:
            self.send_started = min(filter(None, [self.send_started, other.send_started]))
        if other.last_send_done is not None:
            self.last_send_done = max(filter(None, [self.last_send_done, other.last_send_done]))


# What a failed order write means for its intent (DESIGN §4.2), most specific first.
SEND_ERRORS: tuple[tuple[type[BrokerError], str, str], ...] = (
    (RateLimited, MappingStatus.PLANNED, "send_deferred"),  # nothing placed: send again later
    (BrokerUnavailable, MappingStatus.PLANNED, "send_deferred"),  # refused before sending
    (OutcomeUnknown, MappingStatus.UNKNOWN, "send_unknown"),  # may exist: look it up by tag
    (TokenExpired, MappingStatus.FAILED, "send_failed"),
    (OrderRejected, MappingStatus.REJECTED, "send_rejected"),
    (InputRejected, MappingStatus.REJECTED, "send_rejected"),
)


def send_error_outcome(exc: BrokerError) -> tuple[str, str]:
    """(mapping status, event kind) for an error raised by an order write.

    An error we cannot classify came after the write was sent, so the order may exist: UNKNOWN.
    """
    for kind, status, event in SEND_ERRORS:
        if isinstance(exc, kind):
            return status, event
    return MappingStatus.UNKNOWN, "send_unknown"


def mapping_request(m: OrderMapping) -> OrderRequest:
    order_type = OrderType(m.order_type)
    return OrderRequest(
        exchange=m.exchange,
        tradingsymbol=m.tradingsymbol,
        side=Side(m.side),
        quantity=m.quantity,
        product=Product(m.product),
        order_type=order_type,
        price=m.price if order_type in (OrderType.LIMIT, OrderType.SL) else None,
        trigger_price=m.trigger_price if order_type in (OrderType.SL, OrderType.SLM) else None,
        validity=Validity(m.validity),
        tag=m.tag,
    )


def status_from_order(order: Order) -> str:
    if order.status == OrderStatus.COMPLETE:
        return MappingStatus.FILLED
    if order.status == OrderStatus.CANCELLED:
        return MappingStatus.CANCELLED
    if order.status == OrderStatus.REJECTED:
        return MappingStatus.REJECTED
    return MappingStatus.OPEN


def changes(m: OrderMapping, o: Outcome) -> bool:
    return (
        o.status != m.status
        or (o.filled_quantity is not None and o.filled_quantity != m.filled_quantity)
        or (o.broker_status and o.broker_status != m.broker_status)
        or (o.broker_order_id and o.broker_order_id != m.broker_order_id)
        or o.error is not None
    )
