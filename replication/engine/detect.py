"""Stage: detect events — the master's book against the known orders, classified against its
position from one consistent view (DESIGN §3.2)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from brokers.errors import BrokerError
from brokers.types import Order
from replication.engine.calculator import calculator_reads, read_together
from replication.engine.context import TickContext
from replication.engine.master_book import known_orders, master_since, moved, stored_positions
from replication.engine.types import Detected, MasterRead, Positions
from replication.events import (
    BookDiff,
    aggregate,
    classify,
    diff_book,
    effective_quantity,
    engine_tagged,
    moved_at,
    placed_before,
    positions_before_tick,
    set_aside_earlier_book,
)


def positions_before_fills(before_tick: Positions, diff: BookDiff) -> dict[str, int]:
    """The master's position just before each known order's first fill this tick: the position
    before the tick moved by this tick's fills (new orders' and known ones') that the exchange
    reported earlier. A resting exit is sized against it when it fills (DESIGN §3.4)."""
    running = dict(before_tick)
    out: dict[str, int] = {}
    for order, quantity, first, _new in _fill_timeline(diff):
        key = (order.exchange, order.tradingsymbol, order.product.value)
        if first:
            out[order.order_id] = running.get(key, 0)
        running[key] = running.get(key, 0) + quantity * order.side.sign
    return out


def new_fills_before(diff: BookDiff) -> dict[str, tuple[str, ...]]:
    """For each known order that first filled this tick, this tick's new orders in its instrument
    whose fills the exchange reported earlier (the same timeline as `positions_before_fills`): a
    resting order retimed at its fill is replayed after their allocations (§3.4, §3.7)."""
    seen: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    out: dict[str, tuple[str, ...]] = {}
    for order, _quantity, first, new in _fill_timeline(diff):
        key = (order.exchange, order.tradingsymbol, order.product.value)
        if first and seen[key]:
            out[order.order_id] = tuple(seen[key])
        if new:
            seen[key].append(order.order_id)
    return out


def _fill_timeline(diff: BookDiff) -> list[tuple[Order, int, bool, bool]]:
    """This tick's fills in the order the exchange reported them: (order, quantity, whether it is
    a known order's first fill, whether it is a new order); new orders first among equal times."""
    timeline = [(moved_at(o), o, o.filled_quantity, False, True) for o in diff.new if o.filled_quantity]
    timeline += [
        (moved_at(o), o, o.filled_quantity - k.filled_quantity, k.filled_quantity == 0, False)
        for o, k in diff.fills
        if o.filled_quantity > k.filled_quantity
    ]
    timeline.sort(key=lambda t: t[0])
    return [(order, quantity, first, new) for _, order, quantity, first, new in timeline]


def detect_events(ctx: TickContext, read: MasterRead) -> Detected:
    diff = diff_book(read.book, known_orders(read.master, read.book))
    now = ctx.now()
    found = Detected(diff=diff, now=now)
    if not (diff.has_events or diff.rejected or diff.ignored or diff.changed or diff.fills):
        return found
    mode, master = ctx.mode, read.master
    # An account that became master brought its book: what it placed before is known, not new.
    since = master_since(master) if diff.new or (mode == "fill" and diff.fills) else None
    set_aside_earlier_book(diff, since)
    # Which new quantities become events: whole orders (mode order) or fills (mode fill).
    sources: list[tuple[Order, int]]
    if mode == "fill":
        sources = [(o, o.filled_quantity) for o in diff.new if o.filled_quantity > 0]
        sources += [
            (o, o.filled_quantity - k.filled_quantity)
            for o, k in diff.fills
            if o.filled_quantity > k.filled_quantity and not engine_tagged(o) and not placed_before(o, since)
        ]
    else:
        sources = [(o, effective_quantity(o)) for o in diff.new]
    # The master's position from one consistent view (DESIGN §3.2): the position stored at the
    # previous tick plus the fills in this tick's book, never a positions read made after the
    # book (a fill landing in between would count twice, or not at all). Orders set aside
    # (the engine's own, the book a promoted account brought) are part of the position before.
    fills: Positions = defaultdict(int)
    for o in diff.new:
        fills[(o.exchange, o.tradingsymbol, o.product.value)] += o.filled_quantity * o.side.sign
    for o, k in diff.fills:
        fills[(o.exchange, o.tradingsymbol, o.product.value)] += (
            o.filled_quantity - k.filled_quantity
        ) * o.side.sign
    # Fills of known orders that are no event here move the position the new orders are
    # judged against, where the exchange put them (a resting target that filled before the
    # master sold the rest at market).
    as_events = {o.order_id for o, _ in sources}
    moves = [
        (o, o.filled_quantity - k.filled_quantity)
        for o, k in diff.fills
        if o.filled_quantity > k.filled_quantity and o.order_id not in as_events
    ]
    aside: Positions = defaultdict(int)
    for o, _ in diff.ignored:
        aside[(o.exchange, o.tradingsymbol, o.product.value)] += o.filled_quantity * o.side.sign
    existing, stored = stored_positions(master, now)
    found.existing, found.stored_positions = existing, bool(stored)
    if stored and (fills or aside):
        found.positions_after = moved(stored, aside, fills)
    if stored and diff.fills:
        found.fill_before = positions_before_fills(moved(stored, aside), diff)
        found.new_fills_before = new_fills_before(diff)
    if sources:
        # The calculator reads for the opening group go out at once (with the positions read
        # when there is no stored position yet), for the events as they are when nothing
        # closes (a flat master, or one adding to its positions). They are used only if the
        # classified opening group asks exactly the same; otherwise they are read again.
        guess, guessed_reads = calculator_reads(read.client, aggregate(classify(sources, {})))
        hinted: dict[str, Any] = {}
        if read.hinted is not None and read.hinted[0] == guess:
            # Asked already, with the funds and book, from the streamed order that woke the tick.
            hinted, guessed_reads = dict(read.hinted[1]), {}
        reads = guessed_reads if stored else {"positions": read.client.positions, **guessed_reads}
        answers = {**hinted, **read_together(ctx.pool, reads)} if reads else hinted
        if stored:
            before = moved(stored, aside)
        else:
            # First look at this master: the positions read less this tick's fills.
            positions = answers.pop("positions")
            if isinstance(positions, BrokerError):
                ctx.error(f"master positions unavailable, events wait for the next tick: {positions}")
                return found  # nothing recorded: the orders are new again next tick
            before = positions_before_tick(positions, fills)
            found.positions_after = moved(dict.fromkeys(existing, 0), before, fills)
        found.prefetched = (guess, answers)
        found.events = tuple(aggregate(classify(sources, before, moves)))
    found.record = True
    return found
