"""`PaperBroker`: the paper exchange behind the `brokers.base.BrokerClient` interface.

One client per paper account (`user_id`). Errors are `brokers.errors`: InputRejected for bad input
and unknown accounts, OrderRejected for a modification the account cannot afford. An order the
account cannot afford is accepted (an id comes back) and shows REJECTED in `orders()`, as on Kite.
Safe to use from many threads: each thread gets its own database connection from Django.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from datetime import time as clock_time
from decimal import Decimal

from django.conf import settings

from brokers.capabilities import Capabilities, capabilities_for
from brokers.credentials import BrokerCredentials
from brokers.paper.margin import money
from brokers.paper.models import IST, PaperInstrument, PaperOrder, PaperPosition
from brokers.paper.models import OrderStatus as PaperStatus
from brokers.paper.placement import NewOrder
from brokers.paper.selectors import (
    paper_basket_margin,
    paper_instrument_list,
    paper_ltp,
    paper_order_list,
    paper_order_margins,
    paper_position_list,
    unrealised_pnl,
)
from brokers.paper.sequencer import OrderSequencer
from brokers.paper.services import (
    paper_funds,
    paper_order_cancel,
    paper_order_modify,
)
from brokers.types import (
    Funds,
    Instrument,
    InstrumentKey,
    InstrumentType,
    MarginEstimate,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Side,
    Validity,
)

MARKET_CLOSE_IST = clock_time(15, 30)  # an expiry date means this moment, Asia/Kolkata

# The paper exchange is one matching engine: order writes from this process take turns here
# instead of spinning on SQLite's busy timeout (whose back-off sleeps cost tens of milliseconds
# under a 64-thread fan-out). Reads do not take it; other processes still serialise in the database.
# Placements sent while another batch is being placed are placed together (group commit).
EXCHANGE_LOCK = threading.Lock()
SEQUENCER = OrderSequencer(EXCHANGE_LOCK)


def instrument_from_row(row: PaperInstrument) -> Instrument:
    expiry = (
        datetime.combine(row.expiry, MARKET_CLOSE_IST, tzinfo=IST).astimezone(UTC) if row.expiry else None
    )
    return Instrument(
        exchange=row.exchange,
        tradingsymbol=row.tradingsymbol,
        instrument_token=row.instrument_token,
        name=row.name,
        instrument_type=InstrumentType(row.instrument_type),
        segment=row.segment,
        lot_size=row.lot_size,
        tick_size=row.tick_size,
        expiry=expiry,
        strike=row.strike,
        underlying=row.underlying,
        last_price=row.last_price,
        freeze_quantity=row.freeze_quantity,
    )


def order_from_row(row: PaperOrder) -> Order:
    remaining = row.quantity - row.filled_quantity
    return Order(
        order_id=row.order_id,
        exchange=row.exchange,
        tradingsymbol=row.tradingsymbol,
        side=Side(row.side),
        order_type=OrderType(row.order_type),
        product=Product(row.product),
        quantity=row.quantity,
        status=OrderStatus(row.status),
        price=row.price,
        trigger_price=row.trigger_price,
        filled_quantity=row.filled_quantity,
        average_price=row.average_price,
        pending_quantity=remaining if row.is_live else 0,
        cancelled_quantity=remaining if row.status == PaperStatus.CANCELLED else 0,
        validity=Validity(row.validity),
        variety=row.variety,
        tag=row.tag,
        status_message=row.status_message,
        placed_at=row.placed_at,
        updated_at=row.updated_at,
    )


def position_from_row(row: PaperPosition) -> Position:
    return Position(
        exchange=row.exchange,
        tradingsymbol=row.tradingsymbol,
        product=Product(row.product),
        quantity=row.quantity,
        average_price=row.average_price,
        last_price=row.instrument.last_price,
        realised_pnl=row.realised_pnl,
        unrealised_pnl=money(unrealised_pnl(row)),
    )


class PaperBroker:
    """A `BrokerClient` for one paper account; `latency_ms` simulates the network round trip."""

    @property
    def capabilities(self) -> Capabilities:
        """What the paper exchange can do (the registered record: tests may replace it)."""
        return capabilities_for("paper")

    def __init__(self, user_id: str, *, latency_ms: float = 0.0) -> None:
        self.user_id = user_id
        self.latency_ms = latency_ms

    @classmethod
    def for_credentials(cls, creds: BrokerCredentials) -> PaperBroker:
        return cls(creds.user_id, latency_ms=float(settings.PAPER_LATENCY_MS))

    def __repr__(self) -> str:
        return f"PaperBroker(user_id={self.user_id!r})"

    def _network(self) -> None:
        """The simulated round trip: before the work, never inside a transaction."""
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)

    def funds(self) -> Funds:
        self._network()
        return paper_funds(user_id=self.user_id)

    def orders(self) -> list[Order]:
        self._network()
        return [order_from_row(row) for row in paper_order_list(user_id=self.user_id)]

    def positions(self) -> list[Position]:
        self._network()
        return [position_from_row(row) for row in paper_position_list(user_id=self.user_id)]

    def place_order(self, req: OrderRequest) -> str:
        # The simulated round trip is slept by the sequencer, which knows who is about to arrive.
        order = SEQUENCER.place(
            NewOrder(
                user_id=self.user_id,
                exchange=req.exchange,
                tradingsymbol=req.tradingsymbol,
                side=req.side,
                quantity=req.quantity,
                product=req.product,
                order_type=req.order_type,
                price=req.price,
                trigger_price=req.trigger_price,
                validity=req.validity,
                variety=req.variety,
                tag=req.tag,
            ),
            delay=self.latency_ms / 1000,
        )
        return order.order_id

    def modify_order(
        self,
        order_id: str,
        *,
        quantity: int | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        order_type: str | None = None,
        variety: str = "regular",
    ) -> str:
        self._network()
        with EXCHANGE_LOCK:
            order = paper_order_modify(
                user_id=self.user_id,
                order_id=order_id,
                quantity=quantity,
                price=price,
                trigger_price=trigger_price,
                order_type=order_type,
            )
        return order.order_id

    def cancel_order(self, order_id: str, *, variety: str = "regular") -> str:
        self._network()
        with EXCHANGE_LOCK:
            return paper_order_cancel(user_id=self.user_id, order_id=order_id).order_id

    def order_margins(self, reqs: Sequence[OrderRequest]) -> list[MarginEstimate]:
        self._network()
        return paper_order_margins(user_id=self.user_id, requests=reqs)

    def basket_margin(self, reqs: Sequence[OrderRequest]) -> MarginEstimate:
        self._network()
        return paper_basket_margin(user_id=self.user_id, requests=reqs)

    def instruments(self) -> list[Instrument]:
        """Live instruments only, as Kite's daily dump: an expired contract is unknown here."""
        self._network()
        return [instrument_from_row(row) for row in paper_instrument_list(live_only=True)]

    def ltp(self, keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
        self._network()
        return paper_ltp(keys=keys)
