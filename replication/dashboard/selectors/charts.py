"""Charts page: order success per child and the master-to-child latency sample."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count

from accounts.models import Account
from replication.models import MappingStatus, OrderMapping

LATENCY_SAMPLE_MAX = 20000
ACCEPTED = (MappingStatus.FILLED, MappingStatus.OPEN)
REFUSED = (MappingStatus.REJECTED, MappingStatus.FAILED)


@dataclass(frozen=True, slots=True)
class SuccessRow:
    child_id: int
    name: str
    accepted: int
    refused: int

    @property
    def total(self) -> int:
        return self.accepted + self.refused

    @property
    def rate(self) -> Decimal | None:
        if not self.total:
            return None
        return (Decimal(self.accepted) * 100 / self.total).quantize(Decimal("0.1"))


def success_by_child(*, since: datetime) -> list[SuccessRow]:
    """Per child: orders filled or accepted vs rejected or failed since `since` (one query)."""
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    names: dict[int, str] = {}
    for row in (
        OrderMapping.objects.filter(created_at__gte=since, status__in=(*ACCEPTED, *REFUSED))
        .values("child_id", "child__display_name", "child__broker_user_id", "status")
        .annotate(n=Count("pk"))
        .order_by("child_id")
    ):
        cid = row["child_id"]
        names[cid] = row["child__display_name"] or row["child__broker_user_id"]
        counts[cid][0 if row["status"] in ACCEPTED else 1] += row["n"]
    return [SuccessRow(cid, names[cid], a, r) for cid, (a, r) in sorted(counts.items())]


def latencies(*, since: datetime, child: Account | None = None) -> list[int]:
    """Master seen → child acknowledged, in ms, of the most recent orders since `since`."""
    qs = OrderMapping.objects.filter(created_at__gte=since, latency_ms__isnull=False)
    if child is not None:
        qs = qs.filter(child=child)
    return [
        v
        for v in qs.order_by("-id").values_list("latency_ms", flat=True)[:LATENCY_SAMPLE_MAX]
        if v is not None
    ]
