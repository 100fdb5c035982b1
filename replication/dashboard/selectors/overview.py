"""Overview page: the engine's state, the master's funds, the children list and who needs a login."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Case, CharField, Count, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Length
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker, Ownership, Role
from brokers.capabilities import SessionKind, UnknownCapabilities, capabilities_for
from replication.dashboard.charts import percentile
from replication.dashboard.selectors._common import CURVE_POINTS_MAX, day_bounds, trading_day
from replication.dashboard.selectors.charts import ACCEPTED, LATENCY_SAMPLE_MAX, REFUSED
from replication.login_check import brokers_with_sessions
from replication.models import MappingStatus, MarginSnapshot, OrchestratorLease, OrderMapping, TickRun
from replication.sizing.records import CapitalMode, ChildProfile

RECENT_TICKS = 10
# The overview lists the ticks that did something within this window (idle ticks are not shown).
BUSY_TICKS_WINDOW = timedelta(hours=24)


def _busy_ticks() -> Q:
    """Ticks that saw master events, planned, sent or updated child orders, or failed."""
    did = Q()
    for count in ("events", "allocations", "intents", "sent", "rejected", "failed", "unknown", "updated"):
        did |= Q(**{f"counts__{count}__gt": 0})
    return did | ~Q(error="") | Q(outcome=TickRun.Outcome.ERROR)


@dataclass(frozen=True, slots=True)
class EngineState:
    last_tick: TickRun | None
    recent: list[TickRun]  # the last ticks, idle or not (their errors)
    lease: OrchestratorLease | None
    now: datetime
    busy: tuple[TickRun, ...] = ()  # the last ticks that did something (BUSY_TICKS_WINDOW)

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
    now = timezone.now()
    recent = list(TickRun.objects.order_by("-started_at", "-id")[:RECENT_TICKS])
    busy = TickRun.objects.filter(_busy_ticks(), started_at__gte=now - BUSY_TICKS_WINDOW).order_by(
        "-started_at", "-id"
    )[:RECENT_TICKS]
    lease = OrchestratorLease.objects.order_by("pk").first()
    return EngineState(
        last_tick=recent[0] if recent else None, recent=recent, lease=lease, now=now, busy=tuple(busy)
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


def sizing_capital(child: Account) -> Decimal | None:
    """The capital C that sizes `child` (DESIGN §3.1, the sizing rule itself): its fixed amount
    (FIXED), or from its latest snapshot annotated by `child_list` (`snap_used`, `snap_available`):
    U + A (TOTAL) or A (AVAILABLE). None: no reading yet."""
    return ChildProfile(
        child_id=child.pk,
        capital_mode=CapitalMode(child.capital_mode),
        used=getattr(child, "snap_used", None),
        available=getattr(child, "snap_available", None),
        fixed_capital=child.fixed_capital,
        multiplier=child.multiplier,
    ).capital()


@dataclass(frozen=True, slots=True)
class OrderStats:
    """Child orders of a day: accepted or filled vs rejected or failed (as the charts page counts
    them), and the latency from the master order seen to the child order acknowledged."""

    accepted: int = 0
    refused: int = 0
    latencies_ms: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return self.accepted + self.refused

    @property
    def rate(self) -> Decimal | None:
        if not self.total:
            return None
        return (Decimal(self.accepted) * 100 / self.total).quantize(Decimal("0.1"))

    @property
    def p50_ms(self) -> int | None:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> int | None:
        return percentile(self.latencies_ms, 99)


def _order_stats(rows: Iterable[tuple[Any, str, int | None]]) -> dict[Any, OrderStats]:
    counts: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    lat: dict[Any, list[int]] = defaultdict(list)
    for key, status, latency in rows:
        if status in ACCEPTED:
            counts[key][0] += 1
        elif status in REFUSED:
            counts[key][1] += 1
        if latency is not None:
            lat[key].append(latency)
    keys = counts.keys() | lat.keys()
    return {k: OrderStats(counts[k][0], counts[k][1], tuple(lat[k])) for k in keys}


def _day_orders(day: date | None) -> QuerySet[OrderMapping]:
    start, end = day_bounds(day or trading_day())
    # Orders that went to a broker (skipped, planned and dry-run ones say nothing of a broker).
    sent = (*ACCEPTED, *REFUSED, MappingStatus.CANCELLED, MappingStatus.UNKNOWN)
    return OrderMapping.objects.filter(created_at__gte=start, created_at__lt=end, status__in=sent)


def child_order_stats(*, child_ids: Iterable[int], day: date | None = None) -> dict[int, OrderStats]:
    """Per child of `child_ids`: the day's success rate and latency (one query)."""
    rows = _day_orders(day).filter(child_id__in=list(child_ids))
    return _order_stats(rows.values_list("child_id", "status", "latency_ms"))


def broker_order_stats(*, day: date | None = None) -> list[tuple[str, str, OrderStats]]:
    """(broker, label, stats) per broker that had child orders on the day (of the day's most
    recent LATENCY_SAMPLE_MAX child orders)."""
    rows = (
        _day_orders(day)
        .order_by("-id")
        .values_list("child__broker", "status", "latency_ms")[:LATENCY_SAMPLE_MAX]
    )
    stats = _order_stats(rows)
    labels = dict(Broker.choices)
    return [(str(b), str(labels.get(str(b), b)), stats[b]) for b in sorted(stats, key=str)]


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
            snap_available=Subquery(latest.values("available_margin")[:1]),
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
    """Enabled accounts that need a person to log in: marked so by the engine, or, at a broker
    whose session has a token (`replication.login_check.brokers_with_sessions`: Kite, Angel One),
    a token that is missing or past its expiry, except where the server logs in by itself (a
    headless TOTP login with the PIN and TOTP secret stored, as `login_check.server_logs_in`).
    Pending claims are left out (a client's login to prove)."""
    now = now or timezone.now()
    stale = Q(broker__in=brokers_with_sessions()) & (
        Q(token_expires_at__isnull=True) | Q(token_expires_at__lte=now)
    )
    # Empty credentials are stored as "" (never encrypted), so the length says whether one is stored.
    server_logs_in = Q(broker__in=brokers_with_headless_login(), pin_length__gt=0, totp_length__gt=0)
    return (
        Account.objects.exclude(status=AccountStatus.DISABLED)
        .exclude(ownership=Ownership.PENDING)
        .annotate(pin_length=Length("pin"), totp_length=Length("totp_secret"))
        .filter(Q(status=AccountStatus.NEEDS_LOGIN) | (stale & ~server_logs_in))
        .order_by("role", "pk")
    )


def brokers_with_headless_login() -> list[str]:
    """The broker kinds whose session is a headless TOTP login the server does itself."""
    kinds = []
    for kind in Broker.values:
        try:
            if capabilities_for(kind).session.kind is SessionKind.HEADLESS_TOTP:
                kinds.append(kind)
        except UnknownCapabilities:
            continue
    return kinds
