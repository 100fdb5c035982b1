"""Reads for the staff dashboards: querysets with their relations loaded, and small presentation rows.

Dates the staff pick ("today", a day filter) are trading days in Asia/Kolkata; everything stored
and compared is aware UTC.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Broker, Ownership, Role
from brokers.errors import BrokerError
from brokers.types import Position, Side
from replication.allocation import CORRECTIVE
from replication.clients import ClientCache
from replication.dashboard.spreadsheet import CsvCell
from replication.models import (
    Allocation,
    AllocationStatus,
    MappingStatus,
    MarginSnapshot,
    MasterOrder,
    OrchestratorLease,
    OrderMapping,
    ReplicationEvent,
    TickRun,
)
from replication.reconciliation import Drift, Grade, reconcile

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
BPS = Decimal(10000)
RECENT_TICKS = 10
CURVE_POINTS_MAX = 2000
LATENCY_SAMPLE_MAX = 20000
ACCEPTED = (MappingStatus.FILLED, MappingStatus.OPEN)
REFUSED = (MappingStatus.REJECTED, MappingStatus.FAILED)

_clients = ClientCache()


def broker_clients() -> ClientCache:
    """The dashboard's broker clients (one cache per web process, reused across requests)."""
    return _clients


def display_zone() -> ZoneInfo:
    return ZoneInfo(settings.DISPLAY_TIME_ZONE)


def trading_day(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(display_zone()).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a trading day in Asia/Kolkata, as aware datetimes."""
    start = datetime.combine(day, time.min, tzinfo=display_zone())
    return start, start + timedelta(days=1)


# --- Overview ----------------------------------------------------------------------------------


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


# --- Replication log ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogFilters:
    day: date | None = None
    instrument: str = ""
    status: str = ""


def allocation_log(filters: LogFilters) -> QuerySet[Allocation]:
    """Allocations (newest first) with their master orders and child orders loaded; filters by
    trading day, instrument (`SYMBOL` or `EXCHANGE:SYMBOL`, partial match) and child order status."""
    mappings = OrderMapping.objects.select_related("child").order_by("child_id", "slice_no")
    qs = Allocation.objects.select_related("master", "tick")
    if filters.day:
        start, end = day_bounds(filters.day)
        qs = qs.filter(created_at__gte=start, created_at__lt=end)
    if filters.instrument:
        text = filters.instrument.strip().upper()
        if ":" in text:
            exchange, _, symbol = text.partition(":")
            qs = qs.filter(exchange=exchange, tradingsymbol__icontains=symbol)
        else:
            qs = qs.filter(tradingsymbol__icontains=text)
    if filters.status:
        qs = qs.filter(mappings__status=filters.status).distinct()
        mappings = mappings.filter(status=filters.status)
    return qs.prefetch_related(
        Prefetch("mappings", queryset=mappings, to_attr="child_orders"),
        Prefetch("master_orders", queryset=MasterOrder.objects.order_by("id"), to_attr="master_order_list"),
    ).order_by("-created_at", "-id")


def master_average_price(orders: Iterable[MasterOrder]) -> Decimal | None:
    """Fill-weighted average price of the master's orders behind one allocation."""
    filled = [(o.filled_quantity, o.average_price) for o in orders if o.filled_quantity and o.average_price]
    quantity = sum(q for q, _ in filled)
    if not quantity:
        return None
    return (sum((Decimal(q) * p for q, p in filled), ZERO) / quantity).quantize(Decimal("0.01"))


def slippage(side: str, master_price: Decimal | None, child_price: Decimal | None) -> Decimal | None:
    """Per unit, signed so that positive is worse for the child (paid more, or sold for less)."""
    if not master_price or not child_price:
        return None
    diff = child_price - master_price
    return (diff if side == Side.BUY else -diff).quantize(Decimal("0.01"))


@dataclass(frozen=True, slots=True)
class ChildOrderRow:
    mapping: OrderMapping
    slippage: Decimal | None
    slippage_bps: Decimal | None


@dataclass(frozen=True, slots=True)
class LogEntry:
    allocation: Allocation
    master_price: Decimal | None
    orders: list[ChildOrderRow]
    corrective: bool

    @property
    def fraction_pct(self) -> Decimal | None:
        f = self.allocation.fraction
        return None if f is None else (f * 100).quantize(Decimal("0.01"))

    @property
    def exit_pct(self) -> Decimal | None:
        r = self.allocation.exit_ratio
        return None if r is None else (r * 100).quantize(Decimal("0.1"))

    @property
    def planned_quantity(self) -> int:
        return sum(r.mapping.quantity for r in self.orders)

    @property
    def filled_quantity(self) -> int:
        return sum(r.mapping.filled_quantity for r in self.orders)


@dataclass(frozen=True, slots=True)
class LogGroup:
    group_key: str
    entries: list[LogEntry] = field(default_factory=list)

    @property
    def first(self) -> Allocation:
        return self.entries[0].allocation


def _child_row(side: str, master_price: Decimal | None, m: OrderMapping) -> ChildOrderRow:
    slip = slippage(side, master_price, m.average_price if m.filled_quantity else None)
    bps = (slip / master_price * BPS).quantize(Decimal("0.1")) if slip is not None and master_price else None
    return ChildOrderRow(m, slip, bps)


def log_entry(a: Allocation) -> LogEntry:
    master_price = master_average_price(getattr(a, "master_order_list", []))
    orders = [_child_row(a.side, master_price, m) for m in getattr(a, "child_orders", [])]
    return LogEntry(a, master_price, orders, a.margin_source == CORRECTIVE)


def log_groups(allocations: Iterable[Allocation]) -> list[LogGroup]:
    """Consecutive allocations of one master event group (one tick's legs) under one heading."""
    groups: list[LogGroup] = []
    for a in allocations:
        if not groups or groups[-1].group_key != a.group_key:
            groups.append(LogGroup(a.group_key))
        groups[-1].entries.append(log_entry(a))
    return groups


CSV_HEADER = (
    "allocation_id",
    "group",
    "created_at",
    "kind",
    "allocation_status",
    "instrument",
    "product",
    "side",
    "master_quantity",
    "fraction",
    "exit_ratio",
    "attributed_margin",
    "margin_source",
    "allocation_reason",
    "master_avg_price",
    "child_id",
    "child",
    "tag",
    "quantity",
    "lots",
    "status",
    "filled_quantity",
    "child_avg_price",
    "slippage_per_unit",
    "latency_ms",
    "reason_code",
    "reason",
)


def log_csv_rows(filters: LogFilters, *, chunk: int = 500) -> Iterator[list[CsvCell]]:
    """One row per child order of the filtered allocations (no pagination), streamed in chunks.

    Numbers stay numbers and text stays text, so the writer can neutralise text that a spreadsheet
    would run as a formula (`spreadsheet.csv_row`) without touching a negative quantity or price.
    """
    zone = display_zone()
    qs = allocation_log(filters)
    for a in qs.iterator(chunk_size=chunk):
        entry = log_entry(a)
        base: list[CsvCell] = [
            a.pk,
            a.group_key,
            a.created_at.astimezone(zone).isoformat(timespec="seconds"),
            a.kind,
            a.status,
            f"{a.exchange}:{a.tradingsymbol}",
            a.product,
            a.side,
            a.master_quantity,
            a.fraction,
            a.exit_ratio,
            a.attributed_margin,
            a.margin_source,
            a.reason,
            entry.master_price,
        ]
        if not entry.orders:
            yield base + [None] * (len(CSV_HEADER) - len(base))
        for row in entry.orders:
            m = row.mapping
            yield [
                *base,
                m.child_id,
                m.child.display_name or m.child.broker_user_id,
                m.tag,
                m.quantity,
                m.lots,
                m.status,
                m.filled_quantity,
                m.average_price if m.filled_quantity else None,
                row.slippage,
                m.latency_ms,
                m.reason_code,
                m.reason,
            ]


# --- Reconciliation ----------------------------------------------------------------------------


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
        children=list(children), clients=clients or broker_clients(), lot_sizes=lot_sizes(instruments)
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


# --- Child detail ------------------------------------------------------------------------------


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
        positions = (clients or broker_clients()).get(child).positions()
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


# --- Charts ------------------------------------------------------------------------------------


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
