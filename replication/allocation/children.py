"""The children an event is sized for: who is eligible, their sizing rows, fresh margins."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from django.db.models import OuterRef, QuerySet, Subquery

from accounts.models import RISK_FIELDS, Account, AccountStatus, Ownership, Role
from accounts.services.engine_state import account_mark_needs_login
from brokers.errors import BrokerError, TokenExpired
from replication.clients import ClientCache
from replication.fanout import FanOut
from replication.models import MarginSnapshot
from replication.services.snapshots import snapshots_record
from replication.sizing import ChildLimits

logger = logging.getLogger(__name__)


def eligible_children() -> QuerySet[Account]:
    """Linked, enabled, consented children (not pending claims) with their latest margin snapshot."""
    latest = MarginSnapshot.objects.filter(account=OuterRef("pk")).order_by("-taken_at", "-id")
    return (
        Account.objects.filter(role=Role.CHILD, consent_given_at__isnull=False)
        .exclude(status=AccountStatus.DISABLED)
        .exclude(ownership=Ownership.PENDING)
        .annotate(
            snap_used=Subquery(latest.values("used_margin")[:1]),
            snap_available=Subquery(latest.values("available_margin")[:1]),
            snap_at=Subquery(latest.values("taken_at")[:1]),
        )
        .defer(*Account.SECRET_FIELDS)  # decrypted only when a client is built (ClientCache)
        .order_by("id")
    )


CHILD_ROW_FIELDS = (
    "pk",
    "status",
    "breaker_tripped_at",
    "capital_mode",
    "fixed_capital",
    "multiplier",
    "dry_run",
    "consent_given_at",
    *RISK_FIELDS,  # lists then number limits, in ChildRow's order
    "snap_used",
    "snap_available",
    "snap_at",
)


class ChildRow(NamedTuple):
    """What sizing needs of a child, read with `.values_list` (no model instances: one event
    sizes every child, and building a thousand models costs more than sizing them)."""

    pk: int
    status: str
    breaker_tripped_at: datetime | None
    capital_mode: str
    fixed_capital: Decimal | None
    multiplier: Decimal
    dry_run: bool
    consent_at: datetime | None
    allowed_instruments: list[str]
    blocked_instruments: list[str]
    allowed_products: list[str]
    max_lots_per_order: int | None
    max_quantity: int | None
    max_order_value: Decimal | None
    max_open_positions: int | None
    daily_loss_limit: Decimal | None
    snap_used: Decimal | None
    snap_available: Decimal | None
    snap_at: datetime | None


def eligible_child_rows(limit: int | None = None) -> list[ChildRow]:
    """The eligible children's sizing rows, by id (`limit`: the first that many only)."""
    qs = eligible_children().values_list(*CHILD_ROW_FIELDS)
    return [ChildRow(*values) for values in (qs if limit is None else qs[:limit])]


def child_rows(ids: Iterable[int]) -> dict[int, ChildRow]:
    """These children's sizing rows (limits, latest snapshot), if they are still eligible."""
    qs = eligible_children().filter(pk__in=list(ids)).values_list(*CHILD_ROW_FIELDS)
    return {values[0]: ChildRow(*values) for values in qs}


def refresh_child_margins(
    children: Sequence[Account], *, clients: ClientCache, fanout: FanOut
) -> dict[int, MarginSnapshot]:
    """Read funds for these children concurrently and store one snapshot each (batched).

    A child whose session is dead moves to NEEDS_LOGIN (audited) and gets no snapshot.
    """
    expired: list[int] = []

    def read(child: Account) -> list[MarginSnapshot]:
        try:
            f = clients.get(child).funds()
        except TokenExpired:
            expired.append(child.pk)
            return []
        except BrokerError as exc:
            logger.warning("funds of child %s unavailable: %s", child.pk, exc)
            return []
        except Exception:  # credentials unreadable and the like: the child is skipped, not the tick
            logger.exception("funds of child %s unavailable", child.pk)
            return []
        return [
            MarginSnapshot(
                account_id=child.pk, used_margin=f.used, available_margin=f.available, capital=f.capital
            )
        ]

    snaps = fanout.map(read, list(children))
    snapshots_record(snapshots=snaps)
    if expired:
        account_mark_needs_login(account_ids=expired, reason="broker session expired while reading margins")
    return {s.account_id: s for s in snaps}


def child_limits(c: ChildRow) -> ChildLimits:
    return ChildLimits(
        allowed_instruments=frozenset(c.allowed_instruments or ()),
        blocked_instruments=frozenset(c.blocked_instruments or ()),
        allowed_products=frozenset(c.allowed_products or ()),
        max_lots_per_order=c.max_lots_per_order,
        max_quantity=c.max_quantity,
        max_order_value=c.max_order_value,
        max_open_positions=c.max_open_positions,
        daily_loss_limit=c.daily_loss_limit,
    )


def has_limits(c: ChildRow) -> bool:
    return bool(
        c.allowed_instruments
        or c.blocked_instruments
        or c.allowed_products
        or c.max_lots_per_order
        or c.max_quantity
        or c.max_order_value
        or c.max_open_positions is not None
        or c.daily_loss_limit is not None
    )


def accounts_of(rows: Sequence[ChildRow]) -> list[Account]:
    """Model instances (credentials deferred) for the few children that need a broker read."""
    if not rows:
        return []
    return list(Account.objects.filter(pk__in=[r.pk for r in rows]).defer(*Account.SECRET_FIELDS))
