"""An in-memory exchange: orders fill at once at a fixed price, nothing touches a database.

Used by `bench_fanout --exchange memory` to measure the engine's own fan-out cost apart from the
paper exchange's (which persists every order and so serialises writers on SQLite). Each account
has its own lock, like independent broker sessions; `latency_ms` is slept before each call.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from decimal import Decimal

from brokers.capabilities import Capabilities, capabilities_for
from brokers.errors import InputRejected
from brokers.types import (
    Funds,
    Instrument,
    InstrumentKey,
    MarginEstimate,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
    Product,
    SegmentFunds,
)

_ids = itertools.count(1)
_ids_lock = threading.Lock()


class MemoryExchange:
    """The shared book of every memory account (one per process)."""

    def __init__(
        self, *, price: Decimal, margin_rate: Decimal = Decimal("0.10"), cash: Decimal = Decimal("0")
    ):
        self.price = price
        self.margin_rate = margin_rate
        self.cash = cash
        self.orders: dict[str, list[Order]] = {}
        self.locks: dict[str, threading.Lock] = {}
        self._registry_lock = threading.Lock()

    def lock(self, user_id: str) -> threading.Lock:
        with self._registry_lock:
            return self.locks.setdefault(user_id, threading.Lock())


class MemoryBroker:
    @property
    def capabilities(self) -> Capabilities:
        """The paper exchange's record: the bench's memory exchange stands in for it."""
        return capabilities_for("paper")

    def __init__(self, user_id: str, exchange: MemoryExchange, *, latency_ms: float = 0.0) -> None:
        self.user_id = user_id
        self.exchange = exchange
        self.latency_ms = latency_ms

    def _network(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)

    def _book(self) -> list[Order]:
        return list(self.exchange.orders.get(self.user_id, ()))

    def funds(self) -> Funds:
        self._network()
        used = sum(
            (Decimal(o.filled_quantity) * o.average_price * self.exchange.margin_rate for o in self._book()),
            Decimal("0"),
        )
        return Funds.from_segments((SegmentFunds("equity", True, used, self.exchange.cash - used),))

    def orders(self) -> list[Order]:
        self._network()
        return self._book()

    def positions(self) -> list[Position]:
        self._network()
        net: dict[tuple[str, str, Product], int] = {}
        for o in self._book():
            key = (o.exchange, o.tradingsymbol, o.product)
            net[key] = net.get(key, 0) + o.filled_quantity * o.side.sign
        price = self.exchange.price
        return [Position(ex, sym, product, qty, price, price) for (ex, sym, product), qty in net.items()]

    def place_order(self, req: OrderRequest) -> str:
        self._network()
        if req.quantity <= 0:
            raise InputRejected("quantity must be positive")
        with _ids_lock:
            order_id = f"9{next(_ids):018d}"
        order = Order(
            order_id=order_id,
            exchange=req.exchange,
            tradingsymbol=req.tradingsymbol,
            side=req.side,
            order_type=req.order_type,
            product=req.product,
            quantity=req.quantity,
            status=OrderStatus.COMPLETE,
            filled_quantity=req.quantity,
            average_price=self.exchange.price,
            tag=req.tag,
        )
        with self.exchange.lock(self.user_id):
            self.exchange.orders.setdefault(self.user_id, []).append(order)
        return order_id

    def modify_order(self, order_id: str, **kwargs: object) -> str:
        self._network()
        raise InputRejected("orders on the memory exchange fill at once and cannot be modified")

    def cancel_order(self, order_id: str, *, variety: str = "regular") -> str:
        self._network()
        raise InputRejected("orders on the memory exchange fill at once and cannot be cancelled")

    def order_margins(self, reqs: Sequence[OrderRequest]) -> list[MarginEstimate]:
        self._network()
        return [
            MarginEstimate(total=Decimal(r.quantity) * self.exchange.price * self.exchange.margin_rate)
            for r in reqs
        ]

    def basket_margin(self, reqs: Sequence[OrderRequest]) -> MarginEstimate:
        return MarginEstimate(total=sum((m.total for m in self.order_margins(reqs)), Decimal("0")))

    def instruments(self) -> list[Instrument]:
        self._network()
        return []

    def ltp(self, keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
        self._network()
        return dict.fromkeys(keys, self.exchange.price)
