"""Reconciliation page: expected vs actual per traded child, and allocations awaiting approval."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from accounts.models import Account, AccountStatus, Role
from replication.clients import ClientCache
from replication.dashboard.selectors._common import package_broker_clients
from replication.models import Allocation, AllocationStatus, MappingStatus, OrderMapping
from replication.reconciliation import Drift, Grade, reconcile


def reconcile_children() -> QuerySet[Account]:
    """Children the engine has placed orders for (the ones with something to reconcile)."""
    traded = OrderMapping.objects.filter(child=OuterRef("pk"), quantity__gt=0)
    return (
        Account.objects.filter(role=Role.CHILD)
        .exclude(status=AccountStatus.DISABLED)
        .filter(pk__in=Subquery(traded.values("child_id")))
        .order_by("pk")
    )


def lot_sizes(instruments: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Lot size per (exchange, symbol) from the latest allocation that traded it (one query)."""
    symbols = {sym for _, sym in instruments}
    if not symbols:
        return {}
    sizes: dict[tuple[str, str], int] = {}
    for exchange, symbol, lot in (
        Allocation.objects.filter(tradingsymbol__in=symbols, lot_size__gt=0)
        .order_by("id")
        .values_list("exchange", "tradingsymbol", "lot_size")
    ):
        sizes[(exchange, symbol)] = lot
    return sizes


@dataclass(frozen=True, slots=True)
class DriftRow:
    child: Account
    drift: Drift
    working: int  # child orders not yet final in this instrument

    @property
    def correctable(self) -> bool:
        return self.drift.grade in (Grade.MINOR, Grade.MAJOR) and not self.working


def drift_rows(children: Sequence[Account], *, clients: ClientCache | None = None) -> list[DriftRow]:
    """Expected vs actual for these children (one broker read each), with working-order counts."""
    if not children:
        return []
    by_id = {c.pk: c for c in children}
    instruments = set(
        OrderMapping.objects.filter(child_id__in=list(by_id), quantity__gt=0)
        .values_list("exchange", "tradingsymbol")
        .distinct()
    )
    drifts = reconcile(
        children=list(children), clients=clients or package_broker_clients(), lot_sizes=lot_sizes(instruments)
    )
    working: dict[tuple[int, str, str, str], int] = defaultdict(int)
    for row in (
        OrderMapping.objects.filter(
            child_id__in=list(by_id),
            status__in=(
                MappingStatus.PLANNED,
                MappingStatus.SENDING,
                MappingStatus.UNKNOWN,
                MappingStatus.OPEN,
            ),
        )
        .values("child_id", "exchange", "tradingsymbol", "product")
        .annotate(n=Count("pk"))
    ):
        working[(row["child_id"], row["exchange"], row["tradingsymbol"], row["product"])] = row["n"]
    return [
        DriftRow(by_id[d.child_id], d, working[(d.child_id, d.exchange, d.tradingsymbol, d.product)])
        for d in drifts
    ]


def awaiting_approval() -> QuerySet[Allocation]:
    """Allocations held for a staff decision, oldest first, with their planned child order counts."""
    return (
        Allocation.objects.filter(status=AllocationStatus.AWAITING_APPROVAL)
        .select_related("master", "tick")
        .annotate(child_orders=Count("mappings", filter=Q(mappings__status=MappingStatus.PLANNED)))
        .order_by("created_at", "id")
    )
