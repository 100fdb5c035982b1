"""Replication log page: allocations with their master and child orders, slippage, the CSV export."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db.models import Prefetch, QuerySet

from brokers.types import Side
from replication.allocation import CORRECTIVE
from replication.dashboard.selectors._common import BPS, ZERO, day_bounds, display_zone
from replication.dashboard.spreadsheet import CsvCell
from replication.models import Allocation, MasterOrder, OrderMapping


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
