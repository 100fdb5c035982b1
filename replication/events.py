"""Master events from the master's order book (DESIGN §3.2). No database, no broker calls.

`diff_book` compares the book with the master orders already known; `classify` turns new orders
into opening / closing events against the position just before each order (crossing zero splits
into a closing part and an opening part); `aggregate` folds slices of one instrument, side and
product seen in one tick into a single event so that rounding happens once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from brokers.types import Order, OrderStatus, OrderType, Position, Side

InstrumentPos = tuple[str, str, str]  # (exchange, tradingsymbol, product)

# The tag the engine puts on every child order (`replication.allocation.make_tag`): R<alloc>C<child>S<slice>.
ENGINE_TAG = re.compile(r"R[0-9A-Z]+C[0-9A-Z]+S[0-9A-Z]+")
ENGINE_ORDER = "placed by the replication engine (an account that was a child): never a master event"
EARLIER_BOOK = "placed before this account became master: its known book, not a master event"


def engine_tagged(order: Order) -> bool:
    """An order the engine placed (a promoted child's book still holds them)."""
    return bool(order.tag) and ENGINE_TAG.fullmatch(order.tag) is not None


def placed_before(order: Order, since: datetime | None) -> bool:
    """Placed before `since` (the account's promotion to master): part of the book it brought."""
    return since is not None and order.placed_at is not None and order.placed_at < since


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """What the engine already recorded about a master order."""

    order_id: str
    quantity: int
    price: Decimal
    trigger_price: Decimal
    filled_quantity: int
    status: str
    order_type: str = ""  # "" when not known: an order-type change is then not detected


@dataclass(frozen=True, slots=True)
class Modification:
    order: Order
    known: KnownOrder
    price_changed: bool
    trigger_changed: bool
    quantity_changed: bool
    type_changed: bool = False


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
            elif engine_tagged(order):
                diff.ignored.append((order, ENGINE_ORDER))
            elif effective_quantity(order) <= 0:
                diff.ignored.append((order, "cancelled before anything filled"))
            else:
                diff.new.append(order)
            continue
        was_open = seen.status not in (OrderStatus.COMPLETE, OrderStatus.CANCELLED, OrderStatus.REJECTED)
        changed = False
        # LIMIT -> MARKET (or SL -> SL-M): a modification even when the order filled at once.
        type_changed = bool(seen.order_type) and order.order_type.value != seen.order_type
        if was_open and order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
            diff.cancelled.append((order, seen))
            changed = True
        elif was_open and (order.status.is_open or (type_changed and order.status == OrderStatus.COMPLETE)):
            mod = Modification(
                order,
                seen,
                price_changed=order.price != seen.price,
                trigger_changed=order.trigger_price != seen.trigger_price,
                quantity_changed=order.status.is_open and order.quantity != seen.quantity,
                type_changed=type_changed,
            )
            if mod.price_changed or mod.trigger_changed or mod.quantity_changed or mod.type_changed:
                diff.modified.append(mod)
                changed = True
        if order.filled_quantity != seen.filled_quantity:
            diff.fills.append((order, seen))
            changed = True
        if changed or order.status.value != seen.status:
            diff.changed.append(order)
    return diff


def set_aside_earlier_book(diff: BookDiff, since: datetime | None) -> None:
    """New orders placed before `since` (when the account became master) are its known book:
    recorded as ignored, never master events."""
    if since is None or not diff.new:
        return
    earlier = [o for o in diff.new if placed_before(o, since)]
    if earlier:
        diff.new = [o for o in diff.new if not placed_before(o, since)]
        diff.ignored.extend((o, EARLIER_BOOK) for o in earlier)


def note_type_changes(diff: BookDiff, known: Mapping[str, KnownOrder]) -> None:
    """Order-type changes of known open orders that `diff_book` could not see (its known orders
    carried no type): added as modifications, as `diff_book` does when it can."""
    listed = {m.order.order_id for m in diff.modified} | {o.order_id for o, _ in diff.cancelled}
    for order in diff.changed:
        seen = known.get(order.order_id)
        if seen is None or order.order_id in listed or not seen.order_type:
            continue
        if seen.status in (OrderStatus.COMPLETE, OrderStatus.CANCELLED, OrderStatus.REJECTED):
            continue
        if order.order_type.value != seen.order_type and (
            order.status.is_open or order.status == OrderStatus.COMPLETE
        ):
            diff.modified.append(
                Modification(
                    order,
                    seen,
                    price_changed=order.price != seen.price,
                    trigger_changed=order.trigger_price != seen.trigger_price,
                    quantity_changed=order.status.is_open and order.quantity != seen.quantity,
                    type_changed=True,
                )
            )


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


def moved_at(order: Order) -> tuple[str, str]:
    """When an order moved the master's position: its last fill (else its placing), then its id."""
    at = order.updated_at if order.filled_quantity else order.placed_at
    at = at or order.placed_at
    return (at.isoformat() if at else "", order.order_id)


def classify(
    orders: Sequence[tuple[Order, int]],
    positions: Mapping[InstrumentPos, int],
    moves: Sequence[tuple[Order, int]] = (),
) -> list[MasterEvent]:
    """Opening / closing per order, against the position before it (earlier fills adjust it).

    `moves` are this tick's fills of orders that are no event (a known resting order that
    filled): they are no events, but they move the position the orders after them are judged
    against (DESIGN §3.2), in the order the exchange reported them. Orders are netted only
    between two such moves.

    An instrument with both buys and sells in one tick is **netted** first: the master's position
    goes from `before` to `before + Σ signed quantities`, and only that change is replicated (a
    close, an open, or a close and an open when it crosses zero). Replaying a buy and a sell of
    the same instrument separately would size the close against children that do not hold the
    buy yet, and could pair the two as a "hedge" of one instrument.
    """
    by_key: dict[InstrumentPos, list[tuple[Order, int]]] = {}
    for order, quantity in orders:
        by_key.setdefault((order.exchange, order.tradingsymbol, order.product.value), []).append(
            (order, quantity)
        )
    moved_by_key: dict[InstrumentPos, list[tuple[Order, int]]] = {}
    for order, quantity in moves:
        if quantity:
            moved_by_key.setdefault((order.exchange, order.tradingsymbol, order.product.value), []).append(
                (order, quantity)
            )
    events: list[MasterEvent] = []
    for key, items in by_key.items():
        running = positions.get(key, 0)
        if key not in moved_by_key:
            events.extend(_classify_run(items, running))
            continue
        # Orders and fills of known orders, in the exchange's order; a run of orders between two
        # fills is classified (and netted) on its own.
        timeline = [(moved_at(o), 0, o, q) for o, q in items]
        timeline += [(moved_at(o), 1, o, q) for o, q in moved_by_key[key]]
        timeline.sort(key=lambda t: (t[0], t[1]))
        run: list[tuple[Order, int]] = []
        for _, is_move, order, quantity in timeline:
            if not is_move:
                run.append((order, quantity))
                continue
            if run:
                events.extend(_classify_run(run, running))
                running += sum(min(q, o.filled_quantity) * o.side.sign for o, q in run)
                run = []
            running += quantity * order.side.sign
        if run:
            events.extend(_classify_run(run, running))
    return events


def _classify_run(items: Sequence[tuple[Order, int]], before: int) -> list[MasterEvent]:
    """Classify one instrument's orders against the position `before` them."""
    events: list[MasterEvent] = []
    if len({order.side for order, _ in items}) > 1:
        # Only what filled is netted (it moved the position); an unfilled remainder is an order
        # still resting at the master and is mirrored as one, never folded into a MARKET net that
        # would give children what the master does not hold.
        filled = [(o, min(q, o.filled_quantity)) for o, q in items if min(q, o.filled_quantity) > 0]
        resting = [(o, q - o.filled_quantity) for o, q in items if q > o.filled_quantity]
        events.extend(_netted(filled, before))
        running = before + sum(q * o.side.sign for o, q in filled)
        for order, quantity in resting:
            events.extend(_position_change(running, running + quantity * order.side.sign, [order], order))
        return events
    running = before
    for order, quantity in items:
        events.extend(_position_change(running, running + quantity * order.side.sign, [order], order))
        # Only what filled moves the position the next order is judged against: two resting
        # orders that each close the whole position (a stop-loss and a target placed together)
        # are two closes, not a close and a fresh opposite entry.
        running += min(quantity, order.filled_quantity) * order.side.sign
    return events


def _netted(items: Sequence[tuple[Order, int]], before: int) -> list[MasterEvent]:
    after = before + sum(quantity * order.side.sign for order, quantity in items)
    if after == before:
        return []
    side = Side.BUY if after > before else Side.SELL
    # The order terms of the side that won: the last such order (a slice's terms are the same).
    terms = [order for order, _ in items if order.side == side][-1]
    return _position_change(before, after, [order for order, _ in items], terms)


def _position_change(before: int, after: int, sources: Sequence[Order], terms: Order) -> list[MasterEvent]:
    """The events that move the master from `before` to `after` in one instrument."""

    def event(kind: str, qty: int, pos: int) -> MasterEvent:
        return MasterEvent(
            kind=kind,
            exchange=terms.exchange,
            tradingsymbol=terms.tradingsymbol,
            product=terms.product.value,
            side=Side.BUY if after > before else Side.SELL,
            order_type=terms.order_type,
            quantity=qty,
            price=terms.price,
            trigger_price=terms.trigger_price,
            validity=terms.validity.value,
            position_before=pos,
            order_ids=[o.order_id for o in sources],
            placed_at=min((o.placed_at for o in sources if o.placed_at), default=None),
        )

    change = abs(after - before)
    if before == 0 or (before > 0) == (after > before):
        return [event("open", change, before)]
    closing = min(change, abs(before))
    out = [event("close", closing, before)]
    if change > closing:  # crossed zero: the rest opens the other way
        out.append(event("open", change - closing, 0))
    return out


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
