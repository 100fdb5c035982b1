"""The engine's reads that other apps and interfaces use (the write side is `replication.services`).

`accounts` reads replication through this module and `replication.services` only (an import
contract). Old spellings of event kinds (`LEGACY_EVENT_KINDS`) are matched too, so a filter by kind
finds rows written before they were renamed.
"""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Account
from replication.allocation.positions import replicated_positions
from replication.entitlement import entitled
from replication.models import LEGACY_EVENT_KINDS, EventKind, MarginSnapshot, ReplicationEvent

__all__ = [
    "entitled",
    "event_kind_spellings",
    "event_last_change",
    "event_list",
    "margin_snapshot_latest",
    "replicated_positions",
]


def event_kind_spellings(kind: EventKind | str) -> list[str]:
    """`kind` and every old spelling of it (rows written before the vocabulary was unified)."""
    return [str(kind), *(old for old, new in LEGACY_EVENT_KINDS.items() if new == kind)]


def event_list(
    *, account: Account | None = None, kind: EventKind | str | None = None
) -> QuerySet[ReplicationEvent]:
    """Audit rows, newest first; optionally for one account and one kind (old spellings included)."""
    events = ReplicationEvent.objects.all()
    if account is not None:
        events = events.filter(account=account)
    if kind:
        events = events.filter(kind__in=event_kind_spellings(kind))
    return events.order_by("-created_at", "-id")


def event_last_change(*, account: Account, field: str) -> ReplicationEvent | None:
    """The newest audit row for `account` whose before -> after diff touches `field`."""
    return event_list(account=account).filter(data__has_key=field).first()


def margin_snapshot_latest(*, account: Account) -> MarginSnapshot | None:
    """The account's newest funds reading (None before the first)."""
    return MarginSnapshot.objects.filter(account=account).order_by("-taken_at", "-id").first()
