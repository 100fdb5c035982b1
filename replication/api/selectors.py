"""Reads for the replication API: master events (allocations), their child orders, lot sizes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Prefetch, QuerySet

from accounts.models import Account
from replication.models import Allocation, MasterOrder, OrderMapping

IST = ZoneInfo("Asia/Kolkata")


def _staff(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(getattr(user, "is_staff", False))


def mappings_visible(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[OrderMapping]:
    """Child orders the user may see: all for staff, those in its own accounts for a client."""
    mappings = OrderMapping.objects.all()
    if _staff(user):
        return mappings
    return mappings.filter(child__owner_id=user.pk) if user.pk is not None else mappings.none()


def master_event_list(
    *,
    user: AbstractBaseUser | AnonymousUser,
    day: date | None = None,
    exchange: str | None = None,
    tradingsymbol: str | None = None,
    kind: str | None = None,
    status: str | None = None,
) -> QuerySet[Allocation]:
    """Master events (allocations, newest first) with their master orders.

    A client sees only the events that placed (or planned) an order in one of its accounts. `day` is
    the trading day in India (IST) on which the master order was seen.
    """
    events = Allocation.objects.prefetch_related(
        Prefetch("master_orders", queryset=MasterOrder.objects.order_by("first_seen_at", "id"))
    ).order_by("-created_at", "-id")
    if not _staff(user):
        events = events.filter(pk__in=mappings_visible(user=user).values("allocation_id"))
    if day is not None:
        start = datetime.combine(day, time.min, tzinfo=IST)
        events = events.filter(master_seen_at__gte=start, master_seen_at__lt=start + timedelta(days=1))
    if exchange:
        events = events.filter(exchange=exchange)
    if tradingsymbol:
        events = events.filter(tradingsymbol=tradingsymbol)
    if kind:
        events = events.filter(kind=kind)
    if status:
        events = events.filter(status=status)
    return events


def child_order_counts(
    *, user: AbstractBaseUser | AnonymousUser, allocation_ids: Iterable[int]
) -> dict[int, dict[str, int]]:
    """Per allocation: how many child orders (that the user may see) are in each status."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (
        mappings_visible(user=user)
        .filter(allocation_id__in=list(allocation_ids))
        .values("allocation_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts[row["allocation_id"]][row["status"]] = row["n"]
    return counts


def allocation_get_visible(*, user: AbstractBaseUser | AnonymousUser, pk: int) -> Allocation:
    """One master event; Allocation.DoesNotExist when it is not the user's to see."""
    return master_event_list(user=user).get(pk=pk)


def allocation_child_orders(
    *, user: AbstractBaseUser | AnonymousUser, allocation: Allocation
) -> list[OrderMapping]:
    return list(
        mappings_visible(user=user)
        .filter(allocation=allocation)
        .select_related("child")
        .order_by("child_id", "slice_no", "id")
    )


def lot_sizes_for(*, account: Account) -> dict[tuple[str, str], int]:
    """Lot size per (exchange, symbol) of the instruments the engine traded for this account."""
    rows = (
        Allocation.objects.filter(mappings__child=account)
        .order_by("exchange", "tradingsymbol", "-created_at")
        .values_list("exchange", "tradingsymbol", "lot_size")
    )
    sizes: dict[tuple[str, str], int] = {}
    for exchange, symbol, lot_size in rows:
        sizes.setdefault((exchange, symbol), lot_size or 1)
    return sizes
