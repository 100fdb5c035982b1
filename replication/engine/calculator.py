"""The broker reads an opening group's sizing needs, made together in the pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from brokers.base import BrokerClient
from brokers.capabilities import Capabilities
from brokers.errors import BrokerError
from brokers.types import InstrumentKey, OrderRequest, Product
from replication.engine.types import CalculatorAsk
from replication.events import MasterEvent
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
