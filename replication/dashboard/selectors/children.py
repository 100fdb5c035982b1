"""Child detail page: one child, its capital curve, its broker positions, orders and events."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from accounts.models import Account
from brokers.errors import BrokerError
from brokers.types import Position
from replication.clients import ClientCache
from replication.dashboard.selectors._common import CURVE_POINTS_MAX, ZERO, package_broker_clients
from replication.dashboard.selectors.overview import child_list
from replication.models import MarginSnapshot, OrderMapping, ReplicationEvent

logger = logging.getLogger(__name__)


def child_get(*, pk: int) -> Account:
    """One child with its latest snapshot annotated; raises Account.DoesNotExist."""
    return child_list().get(pk=pk)


def capital_curve(*, child: Account, days: int = 30) -> list[tuple[datetime, Decimal]]:
    since = timezone.now() - timedelta(days=days)
    points = list(
        MarginSnapshot.objects.filter(account=child, taken_at__gte=since)
        .order_by("-taken_at", "-id")
        .values_list("taken_at", "capital")[:CURVE_POINTS_MAX]
    )
    points.reverse()
    return points


@dataclass(frozen=True, slots=True)
class BrokerPositions:
    positions: list[Position]
    error: str = ""

    @property
    def day_pnl(self) -> Decimal:
        return sum((p.pnl for p in self.positions), ZERO)

    @property
    def realised(self) -> Decimal:
        return sum((p.realised_pnl for p in self.positions), ZERO)

    @property
    def unrealised(self) -> Decimal:
        return sum((p.unrealised_pnl for p in self.positions), ZERO)


def broker_positions(*, child: Account, clients: ClientCache | None = None) -> BrokerPositions:
    """The child's positions from its broker (an unreadable broker is reported, not raised)."""
    try:
        positions = (clients or package_broker_clients()).get(child).positions()
    except (BrokerError, CredentialDecryptError) as exc:
        logger.warning("positions of child %s unavailable: %s", child.pk, exc)
        return BrokerPositions([], error=str(exc) or type(exc).__name__)
    return BrokerPositions(sorted(positions, key=lambda p: (p.exchange, p.tradingsymbol, p.product.value)))


def child_orders(*, child: Account) -> QuerySet[OrderMapping]:
    return (
        OrderMapping.objects.filter(child=child).select_related("allocation").order_by("-created_at", "-id")
    )


def child_events(*, child: Account) -> QuerySet[ReplicationEvent]:
    return ReplicationEvent.objects.filter(account=child).order_by("-created_at", "-id")
