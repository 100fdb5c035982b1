"""The broker reads an opening group's sizing needs, made together in the pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from brokers.base import BrokerClient
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
    reads: dict[str, Callable[[], Any]] = {"margins": lambda: client.order_margins(reqs)}
    if len(reqs) > 1:
        reads["basket"] = lambda: client.basket_margin(reqs)
    if ask.market:
        reads["ltp"] = lambda: client.ltp(list(ask.market))
    return ask, reads


def read_together(fanout: FanOut, reads: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run independent broker reads concurrently in the pool (inline when it has no workers);
    each answer is the read's value or the BrokerError it raised."""

    def read(name: str) -> list[tuple[str, Any]]:
        try:
            return [(name, reads[name]())]
        except BrokerError as exc:
            return [(name, exc)]

    return dict(fanout.map(read, list(reads)))
