"""The broker interface every adapter implements (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol, runtime_checkable

from brokers.capabilities import Capabilities
from brokers.types import Funds, Instrument, InstrumentKey, MarginEstimate, Order, OrderRequest, Position


@runtime_checkable
class BrokerClient(Protocol):
    """One client per account. Reads may be retried; writes are never retried blindly.

    `capabilities` says what the broker can do (tag, lookup, margin calculator, rate budgets,
    session); the engine reads it, or `brokers.capabilities.capabilities_for(account.broker)`,
    instead of comparing broker names.
    """

    @property
    def capabilities(self) -> Capabilities:
        """This broker's record (`brokers.capabilities`)."""
        ...

    def funds(self) -> Funds: ...

    def orders(self) -> list[Order]: ...

    def positions(self) -> list[Position]: ...

    def place_order(self, req: OrderRequest) -> str:
        """Place an order and return the broker order id. Raises a BrokerError."""
        ...

    def modify_order(
        self,
        order_id: str,
        *,
        quantity: int | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        order_type: str | None = None,
        variety: str = "regular",
    ) -> str: ...

    def cancel_order(self, order_id: str, *, variety: str = "regular") -> str: ...

    def order_margins(self, reqs: Sequence[OrderRequest]) -> list[MarginEstimate]:
        """Margin for each order on its own."""
        ...

    def basket_margin(self, reqs: Sequence[OrderRequest]) -> MarginEstimate:
        """Margin for the basket, considering the account's positions and hedges."""
        ...

    def instruments(self) -> list[Instrument]: ...

    def ltp(self, keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, Decimal]: ...
