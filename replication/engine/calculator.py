"""The broker reads an opening group's sizing needs, made together in the pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from accounts.models import Account
from brokers.base import BrokerClient
from brokers.capabilities import Capabilities
from brokers.errors import BrokerError
from brokers.types import InstrumentKey, Order, OrderRequest, Product
from replication.engine.master_book import known_orders
from replication.engine.types import CalculatorAsk, Prefetched
from replication.events import MasterEvent, aggregate, classify, diff_book, effective_quantity
from replication.fanout import FanOut


def calculator_reads(
    client: BrokerClient, events: Sequence[MasterEvent]
) -> tuple[CalculatorAsk, dict[str, Callable[[], Any]]]:
    """The broker reads an opening group needs: each order's margin, the basket's (legs together:
    it sees the hedge benefit the single orders miss) and the LTP of MARKET legs (order-value caps)."""
    ask = CalculatorAsk(
        requests=tuple(
            OrderRequest(
                ev.exchange,
                ev.tradingsymbol,
                ev.side,
                ev.quantity,
                Product(ev.product),
                ev.order_type,
                price=ev.price or None,
                trigger_price=ev.trigger_price or None,
            )
            for ev in events
        ),
        market=tuple(InstrumentKey(ev.exchange, ev.tradingsymbol) for ev in events if not ev.price),
    )
    if not ask.requests:
        return ask, {}
    reqs = list(ask.requests)
    reads: dict[str, Callable[[], Any]] = {}
    unasked = unanswerable(getattr(client, "capabilities", None), len(reqs))
    if "margins" not in unasked:
        reads["margins"] = lambda: client.order_margins(reqs)
    if len(reqs) > 1 and "basket" not in unasked:
        reads["basket"] = lambda: client.basket_margin(reqs)
    if ask.market:
        reads["ltp"] = lambda: client.ltp(list(ask.market))
    return ask, reads


def unanswerable(caps: Capabilities | None, legs: int) -> frozenset[str]:
    """The calculator reads the broker cannot answer (its capabilities' margin calculator): none
    without a calculator, no basket without a hedge-aware basket or for more legs than one call
    takes. A client without capabilities is asked everything, as before."""
    if caps is None:
        return frozenset()
    calculator = caps.margin
    if not calculator.available:
        return frozenset({"margins", "basket"})
    if not calculator.basket or (calculator.max_legs is not None and legs > calculator.max_legs):
        return frozenset({"basket"})
    return frozenset()


def read_together(fanout: FanOut, reads: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run independent broker reads concurrently in the pool (inline when it has no workers);
    each answer is the read's value or the BrokerError it raised."""

    def read(name: str) -> list[tuple[str, Any]]:
        try:
            return [(name, reads[name]())]
        except BrokerError as exc:
            return [(name, exc)]

    return dict(fanout.map(read, list(reads)))


def hinted_reads(
    hints: Sequence[Order], mode: str, master: Account, client: BrokerClient
) -> Prefetched | None:
    """The calculator reads for the streamed orders that woke this tick (`hints`), to be made
    with the master's funds and book: what detection will ask if the book's new orders are the
    hinted ones (the same guess, from the same rules), or None when no hint is a new order.
    Only a guess: `detect_events` uses the answers if the book asks exactly the same."""
    if not hints:
        return None
    orders = list(hints)
    diff = diff_book(orders, known_orders(master, orders))
    if mode == "fill":
        sources = [(o, o.filled_quantity) for o in diff.new if o.filled_quantity > 0]
    else:
        sources = [(o, effective_quantity(o)) for o in diff.new]
    if not sources:
        return None
    ask, reads = calculator_reads(client, aggregate(classify(sources, {})))
    # Not the positions of the day's first look: those are read after the book, never with it
    # (one read racing the other could miss a fill the book shows).
    return (ask, reads) if reads else None
