"""What every dashboard read shares: the trading day in Asia/Kolkata, the broker clients, constants.

Dates the staff pick ("today", a day filter) are trading days in Asia/Kolkata; everything stored
and compared is aware UTC.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from replication.clients import ClientCache

ZERO = Decimal(0)
BPS = Decimal(10000)
CURVE_POINTS_MAX = 2000

_clients = ClientCache()


def broker_clients() -> ClientCache:
    """The dashboard's broker clients (one cache per web process, reused across requests)."""
    return _clients


def package_broker_clients() -> ClientCache:
    """`broker_clients` as the package `replication.dashboard.selectors` names it at call time.

    The reads that call a broker look it up there, so that replacing that one name (as the
    dashboard tests do, with clients that never touch the database) reaches every one of them.
    """
    from replication.dashboard import selectors  # the package, loaded by the time this runs

    return selectors.broker_clients()


def display_zone() -> ZoneInfo:
    return ZoneInfo(settings.DISPLAY_TIME_ZONE)


def trading_day(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(display_zone()).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a trading day in Asia/Kolkata, as aware datetimes."""
    start = datetime.combine(day, time.min, tzinfo=display_zone())
    return start, start + timedelta(days=1)
