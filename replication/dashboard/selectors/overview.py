"""Overview page: the engine's state, the master's funds, the children list and who needs a login."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Case, CharField, Count, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker, Ownership, Role
from replication.dashboard.selectors._common import CURVE_POINTS_MAX, day_bounds, trading_day
from replication.models import MarginSnapshot, OrchestratorLease, TickRun

RECENT_TICKS = 10


@dataclass(frozen=True, slots=True)
class EngineState:
    last_tick: TickRun | None
    recent: list[TickRun]
    lease: OrchestratorLease | None
    now: datetime

    @property
    def lease_alive(self) -> bool:
        return bool(
            self.lease and self.lease.holder and self.lease.expires_at and self.lease.expires_at > self.now
        )

    @property
    def errors(self) -> list[TickRun]:
        return [t for t in self.recent if t.error]

    @property
    def seconds_since_tick(self) -> int | None:
        if self.last_tick is None:
            return None
        return max(0, int((self.now - self.last_tick.started_at).total_seconds()))


def engine_state() -> EngineState:
    recent = list(TickRun.objects.order_by("-started_at", "-id")[:RECENT_TICKS])
    lease = OrchestratorLease.objects.order_by("pk").first()
    return EngineState(
        last_tick=recent[0] if recent else None, recent=recent, lease=lease, now=timezone.now()
    )


@dataclass(frozen=True, slots=True)
class MasterFunds:
    master: Account | None
    latest: MarginSnapshot | None
    curve: list[tuple[datetime, Decimal]]  # today's used margin


def master_funds(*, day: date | None = None) -> MasterFunds:
    master = Account.objects.filter(role=Role.MASTER).exclude(status=AccountStatus.DISABLED).first()
    if master is None:
        return MasterFunds(None, None, [])
    start, end = day_bounds(day or trading_day())
    latest = MarginSnapshot.objects.filter(account=master).order_by("-taken_at", "-id").first()
    curve = list(
        MarginSnapshot.objects.filter(account=master, taken_at__gte=start, taken_at__lt=end)
        .order_by("taken_at", "id")
        .values_list("taken_at", "used_margin")[:CURVE_POINTS_MAX]
    )
    return MasterFunds(master, latest, curve)


def _latest_snapshot() -> QuerySet[MarginSnapshot]:
    return MarginSnapshot.objects.filter(account=OuterRef("pk")).order_by("-taken_at", "-id")


class FundsState:
    """What the overview says of a child's funds (`funds_state` of `child_list`)."""

    READ = ""
    NEVER_READ = "never_read"  # no margin snapshot at all: every funds read so far failed
    STALE = "stale"  # the latest snapshot is older than FUNDS_STALE_AFTER: recent reads failed
    NO_CAPITAL = "no_capital"  # read, but capital is zero or less: the engine skips the child


# The child margin refresh runs every minute; a snapshot this old means the reads since failed.
FUNDS_STALE_AFTER = timedelta(minutes=5)


def child_list(*, status: str = "", now: datetime | None = None) -> QuerySet[Account]:
    """Children with their latest margin snapshot (capital, used, taken_at) annotated, and
    `funds_state` (a FundsState value) flagging an enabled child whose funds cannot be read."""
    latest = _latest_snapshot()
    stale_before = (now or timezone.now()) - FUNDS_STALE_AFTER
    qs = (
        Account.objects.filter(role=Role.CHILD)
        .select_related("owner")
        .annotate(
            snap_capital=Subquery(latest.values("capital")[:1]),
            snap_used=Subquery(latest.values("used_margin")[:1]),
            snap_at=Subquery(latest.values("taken_at")[:1]),
        )
        .annotate(
            funds_state=Case(
                When(status=AccountStatus.DISABLED, then=Value(FundsState.READ)),
                When(snap_at__isnull=True, then=Value(FundsState.NEVER_READ)),
                When(snap_at__lt=stale_before, then=Value(FundsState.STALE)),
                When(snap_capital__lte=0, then=Value(FundsState.NO_CAPITAL)),
                default=Value(FundsState.READ),
                output_field=CharField(),
            )
        )
        .order_by("pk")
    )
    if status:
        qs = qs.filter(status=status)
    return qs


def child_status_counts() -> list[tuple[str, str, int]]:
    """(status, label, count) for every child status, zeros included."""
    counts = dict(
        Account.objects.filter(role=Role.CHILD)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return [(value, str(label), counts.get(value, 0)) for value, label in AccountStatus.choices]


def accounts_needing_login(*, now: datetime | None = None) -> QuerySet[Account]:
    """Enabled accounts that need a broker login: marked so by the engine, or a Kite token that
    is missing or past its expiry. Pending claims are left out (a client's login to prove)."""
    now = now or timezone.now()
    kite_stale = Q(broker=Broker.KITE) & (Q(token_expires_at__isnull=True) | Q(token_expires_at__lte=now))
    return (
        Account.objects.exclude(status=AccountStatus.DISABLED)
        .exclude(ownership=Ownership.PENDING)
        .filter(Q(status=AccountStatus.NEEDS_LOGIN) | kite_stale)
        .order_by("role", "pk")
    )
