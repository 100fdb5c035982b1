"""Child intents as rows about to be inserted: the deterministic tag, the row, a skipped row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from brokers.capabilities import ENGINE_TAG_MAX_LENGTH
from replication.models import Allocation, MappingStatus

_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def make_tag(allocation_id: int, child_id: int, slice_no: int) -> str:
    """Deterministic, unique, alphanumeric, at most 19 characters: every broker takes it (Angel's
    limit is under 20; `brokers.capabilities.ENGINE_TAG_MAX_LENGTH`). The format has not changed
    since the limit was Kite's 20, so tags already at a broker are still found by their tag."""
    tag = f"R{_b36(allocation_id)}C{_b36(child_id)}S{_b36(slice_no)}"
    if len(tag) > ENGINE_TAG_MAX_LENGTH:
        raise ValueError(f"tag {tag} is longer than {ENGINE_TAG_MAX_LENGTH} characters")
    return tag


@dataclass(slots=True)
class IntentRow:
    """One OrderMapping row about to be inserted (attribute names are the table's columns)."""

    allocation_id: int
    child_id: int
    slice_no: int
    tag: str
    status: str
    exchange: str
    tradingsymbol: str
    product: str
    side: str
    order_type: str
    validity: str
    price: Decimal
    trigger_price: Decimal
    lots: int
    quantity: int
    capital: Decimal | None
    target_margin: Decimal | None
    reason_code: str
    reason: str
    finished_at: datetime | None
    wave: int = 0
    epoch: int = 0
    broker_order_id: str = ""
    broker_status: str = ""
    filled_quantity: int = 0
    average_price: Decimal = Decimal("0")
    attempts: int = 0
    sent_at: datetime | None = None
    acked_at: datetime | None = None
    latency_ms: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def intent_row(
    a: Allocation,
    child_id: int,
    *,
    slice_no: int,
    side: str,
    lots: int,
    quantity: int,
    status: str,
    reason_code: str = "",
    reason: str = "",
    capital: Decimal | None = None,
    target: Decimal | None = None,
) -> IntentRow:
    return IntentRow(
        allocation_id=a.pk,
        child_id=child_id,
        slice_no=slice_no,
        tag=make_tag(a.pk, child_id, slice_no),
        status=status,
        exchange=a.exchange,
        tradingsymbol=a.tradingsymbol,
        product=a.product,
        side=side,
        order_type=a.order_type,
        validity=a.validity,
        price=a.price,
        trigger_price=a.trigger_price,
        lots=lots,
        quantity=quantity,
        capital=_money(capital),
        target_margin=_unrounded(target),
        reason_code=reason_code,
        reason=reason,
        finished_at=timezone.now() if status in (MappingStatus.SKIPPED, MappingStatus.DRY_RUN) else None,
    )


def skip_row(
    a: Allocation,
    child_id: int,
    code: str,
    reason: str,
    *,
    capital: Decimal | None = None,
    target: Decimal | None = None,
) -> IntentRow:
    return intent_row(
        a,
        child_id,
        slice_no=0,
        side=a.side,
        lots=0,
        quantity=0,
        status=MappingStatus.SKIPPED,
        reason_code=code,
        reason=reason,
        capital=capital,
        target=target,
    )


def _unrounded(v: Decimal | None) -> Decimal | None:
    """The child's target as computed (f × C × multiplier), to the column's 10 places: rounding
    happens once, at whole lots, never to the stored figure."""
    return None if v is None else v.quantize(Decimal("1E-10"))


def _money(v: Decimal | None) -> Decimal | None:
    return None if v is None else v.quantize(Decimal("0.01"))


def status_counts(a: Allocation, created: Sequence[IntentRow]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for m in created:
        if m.allocation_id == a.pk:
            counts[m.status] += 1
    return dict(counts)


def sized_message(a: Allocation, created: Sequence[IntentRow], *, wave: str = "") -> str:
    """`wave`: which part of a group sized in two ("first wave", "the rest, after its first wave")."""
    counts = status_counts(a, created)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"child intents for allocation {a.pk}{f' ({wave})' if wave else ''}: {parts or 'none'}"
