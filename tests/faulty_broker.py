"""A paper broker with switchable faults, installed through the broker registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from brokers import registry
from brokers.errors import BrokerUnavailable, OrderRejected, OutcomeUnknown, RateLimited, TokenExpired
from brokers.paper.client import PaperBroker
from brokers.registry import BrokerCredentials
from brokers.types import Order, OrderRequest


@dataclass
class Faults:
    """Per user id: what to do on the next calls."""

    place_then_unknown: set[str] = field(default_factory=set)  # order placed, then OutcomeUnknown
    unknown_not_placed: set[str] = field(default_factory=set)  # OutcomeUnknown, nothing placed
    rate_limited_once: set[str] = field(default_factory=set)
    token_expired: set[str] = field(default_factory=set)
    reads_down: set[str] = field(default_factory=set)  # funds/orders/positions raise BrokerUnavailable
    hide_orders: set[str] = field(default_factory=set)  # orders() omits everything (late book)
    calculator_down: set[str] = field(default_factory=set)  # margin calculators and LTP unavailable
    modify_refused: set[str] = field(default_factory=set)  # modify_order raises OrderRejected
    extra_orders: dict[str, list[Order]] = field(default_factory=dict)  # injected book entries
    places: list[tuple[str, str]] = field(default_factory=list)  # (user, tag) of every accepted place
    before_place: Callable[[str, OrderRequest], None] | None = None


class FaultyBroker(PaperBroker):
    faults: Faults

    def _check_token(self) -> None:
        if self.user_id in self.faults.token_expired:
            raise TokenExpired("Incorrect `api_key` or `access_token`.")

    def funds(self):  # type: ignore[no-untyped-def]
        self._check_token()
        if self.user_id in self.faults.reads_down:
            raise BrokerUnavailable("OMS unreachable")
        return super().funds()

    def orders(self):  # type: ignore[no-untyped-def]
        self._check_token()
        if self.user_id in self.faults.reads_down:
            raise BrokerUnavailable("OMS unreachable")
        if self.user_id in self.faults.hide_orders:
            return []
        return super().orders() + self.faults.extra_orders.get(self.user_id, [])

    def positions(self):  # type: ignore[no-untyped-def]
        self._check_token()
        if self.user_id in self.faults.reads_down:
            raise BrokerUnavailable("OMS unreachable")
        return super().positions()

    def _check_calculator(self) -> None:
        if self.user_id in self.faults.calculator_down:
            raise BrokerUnavailable("calculator unreachable")

    def order_margins(self, reqs):  # type: ignore[no-untyped-def]
        self._check_calculator()
        return super().order_margins(reqs)

    def basket_margin(self, reqs):  # type: ignore[no-untyped-def]
        self._check_calculator()
        return super().basket_margin(reqs)

    def ltp(self, keys):  # type: ignore[no-untyped-def]
        self._check_calculator()
        return super().ltp(keys)

    def modify_order(self, order_id, **kwargs):  # type: ignore[no-untyped-def]
        self._check_token()
        if self.user_id in self.faults.modify_refused:
            raise OrderRejected("The order cannot be modified now.")
        return super().modify_order(order_id, **kwargs)

    def place_order(self, req: OrderRequest) -> str:
        self._check_token()
        if self.faults.before_place:
            self.faults.before_place(self.user_id, req)
        if self.user_id in self.faults.rate_limited_once:
            self.faults.rate_limited_once.discard(self.user_id)
            raise RateLimited("Too many requests")
        if self.user_id in self.faults.unknown_not_placed:
            self.faults.unknown_not_placed.discard(self.user_id)
            raise OutcomeUnknown("read timeout after send")
        order_id = super().place_order(req)
        self.faults.places.append((self.user_id, req.tag))
        if self.user_id in self.faults.place_then_unknown:
            self.faults.place_then_unknown.discard(self.user_id)
            raise OutcomeUnknown("read timeout after send")
        return order_id


def install(
    faults: Faults, *, broker_class: type[FaultyBroker] = FaultyBroker, **attrs: object
) -> Callable[[], None]:
    """Serve paper accounts through `broker_class` (FaultyBroker or a subclass of it), each client
    with these faults and `attrs` set on it. Returns the function that restores the registry."""

    def factory(creds: BrokerCredentials) -> FaultyBroker:
        client = broker_class(creds.user_id)
        client.faults = faults
        for name, value in attrs.items():
            setattr(client, name, value)
        return client

    previous = registry.register("paper", factory)

    def restore() -> None:
        if previous is None:
            registry._factories.pop("paper", None)  # test-only restore of the private registry
        else:
            registry.register("paper", previous)

    return restore
