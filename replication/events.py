"""Master events from the master's order book (DESIGN §3.2). No database, no broker calls.

`diff_book` compares the book with the master orders already known; `classify` turns new orders
into opening / closing events against the position just before each order (crossing zero splits
into a closing part and an opening part); `aggregate` folds slices of one instrument, side and
product seen in one tick into a single event so that rounding happens once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from brokers.types import Order, OrderStatus, OrderType, Position, Side

InstrumentPos = tuple[str, str, str]  # (exchange, tradingsymbol, product)


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """What the engine already recorded about a master order."""

    order_id: str
    quantity: int
    price: Decimal
    trigger_price: Decimal
    filled_quantity: int
    status: str


@dataclass(frozen=True, slots=True)
class Modification:
    order: Order
    known: KnownOrder
    price_changed: bool
    trigger_changed: bool
    quantity_changed: bool


@dataclass(slots=True)
class BookDiff:
    new: list[Order] = field(default_factory=list)  # not REJECTED, with something to copy
    rejected: list[Order] = field(default_factory=list)  # recorded, never copied
    ignored: list[tuple[Order, str]] = field(default_factory=list)  # new but nothing to copy (why)
    modified: list[Modification] = field(default_factory=list)
    cancelled: list[tuple[Order, KnownOrder]] = field(default_factory=list)
    fills: list[tuple[Order, KnownOrder]] = field(default_factory=list)  # filled quantity moved
    changed: list[Order] = field(default_factory=list)  # any known order whose record must be updated

    @property
    def has_events(self) -> bool:
        return bool(self.new or self.modified or self.cancelled)


def effective_quantity(order: Order) -> int:
    """What a new order asks the children to copy: all of it, or only what filled if it is over."""
    if order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
        return order.filled_quantity
    return order.quantity


def diff_book(book: Iterable[Order], known: Mapping[str, KnownOrder]) -> BookDiff:
    diff = BookDiff()
    for order in sorted(book, key=_book_order):
        seen = known.get(order.order_id)
        if seen is None:
            if order.status == OrderStatus.REJECTED:
                diff.rejected.append(order)
            elif effective_quantity(order) <= 0:
                diff.ignored.append((order, "cancelled before anything filled"))
            else:
                diff.new.append(order)
            continue
        was_open = seen.status not in (OrderStatus.COMPLETE, OrderStatus.CANCELLED, OrderStatus.REJECTED)
        changed = False
        if was_open and order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
            diff.cancelled.append((order, seen))
            changed = True
        elif was_open and order.status.is_open:
            mod = Modification(
                order,
                seen,
                price_changed=order.price != seen.price,
                trigger_changed=order.trigger_price != seen.trigger_price,
                quantity_changed=order.quantity != seen.quantity,
            )
            if mod.price_changed or mod.trigger_changed or mod.quantity_changed:
                diff.modified.append(mod)
                changed = True
        if order.filled_quantity != seen.filled_quantity:
            diff.fills.append((order, seen))
            changed = True
        if changed or order.status.value != seen.status:
            diff.changed.append(order)
    return diff


def _book_order(order: Order) -> tuple[datetime | str, str]:
    return (order.placed_at.isoformat() if order.placed_at else "", order.order_id)


@dataclass(slots=True)
class MasterEvent:
    """One opening or closing event (after classification, before or after aggregation)."""

    kind: str  # "open" | "close"
    exchange: str
    tradingsymbol: str
    product: str
    side: Side
    order_type: OrderType
    quantity: int
    price: Decimal
    trigger_price: Decimal
    validity: str
    position_before: int  # signed master position just before this event
    order_ids: list[str]
    placed_at: datetime | None

    @property
    def key(self) -> InstrumentPos:
        return (self.exchange, self.tradingsymbol, self.product)

    @property
    def master_flat_after(self) -> bool:
        return self.kind == "close" and self.quantity >= abs(self.position_before)


def positions_before_tick(
    positions: Sequence[Position], fill_deltas: Mapping[InstrumentPos, int]
) -> dict[InstrumentPos, int]:
    """The master's positions before this tick's fills: what the broker shows now minus them."""
    before: dict[InstrumentPos, int] = {}
    for p in positions:
        key = (p.exchange, p.tradingsymbol, p.product.value)
        before[key] = before.get(key, 0) + p.quantity
    for key, delta in fill_deltas.items():
        before[key] = before.get(key, 0) - delta
    return before


def classify(
    orders: Sequence[tuple[Order, int]], positions: Mapping[InstrumentPos, int]
) -> list[MasterEvent]:
    """Opening / closing per order, against the position before it (earlier events adjust it)."""
    running = dict(positions)
    events: list[MasterEvent] = []
    for order, quantity in orders:
        key = (order.exchange, order.tradingsymbol, order.product.value)
        before = running.get(key, 0)
        signed = quantity * order.side.sign

        def event(kind: str, qty: int, pos: int, order: Order = order) -> MasterEvent:
            return MasterEvent(
                kind=kind,
                exchange=order.exchange,
                tradingsymbol=order.tradingsymbol,
                product=order.product.value,
                side=order.side,
                order_type=order.order_type,
                quantity=qty,
                price=order.price,
                trigger_price=order.trigger_price,
                validity=order.validity.value,
                position_before=pos,
                order_ids=[order.order_id],
                placed_at=order.placed_at,
            )

        if before == 0 or (before > 0) == (signed > 0):
            events.append(event("open", quantity, before))
        else:
            closing = min(quantity, abs(before))
            events.append(event("close", closing, before))
            if quantity > closing:  # crossed zero: the rest opens the other way
                events.append(event("open", quantity - closing, 0))
        running[key] = before + signed
    return events


def aggregate(events: Sequence[MasterEvent]) -> list[MasterEvent]:
    """Fold events of one kind, instrument, side, product and order terms into one."""
    merged: dict[tuple[object, ...], MasterEvent] = {}
    for ev in events:
        k = (
            ev.kind,
            ev.exchange,
            ev.tradingsymbol,
            ev.product,
            ev.side,
            ev.order_type,
            ev.price,
            ev.trigger_price,
        )
        if k in merged:
            first = merged[k]
            first.quantity += ev.quantity
            first.order_ids.extend(ev.order_ids)
        else:
            merged[k] = MasterEvent(
                kind=ev.kind,
                exchange=ev.exchange,
                tradingsymbol=ev.tradingsymbol,
                product=ev.product,
                side=ev.side,
                order_type=ev.order_type,
                quantity=ev.quantity,
                price=ev.price,
                trigger_price=ev.trigger_price,
                validity=ev.validity,
                position_before=ev.position_before,
                order_ids=list(ev.order_ids),
                placed_at=ev.placed_at,
            )
    return list(merged.values())
