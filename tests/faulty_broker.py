"""Broker clients with switchable faults (paper, Angel One, Dhan, Alice Blue), installed through the
broker registry; `serve_in_process` answers a simulator's HTTP calls in the calling thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.db import transaction
from django.utils import timezone

from brokers import registry
from brokers.alice.client import AliceBroker
from brokers.angel.client import AngelBroker
from brokers.dhan.client import DhanBroker
from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    TokenExpired,
)
from brokers.paper.client import PaperBroker
from brokers.paper.models import OrderStatus, PaperAccount, PaperInstrument, PaperOrder
from brokers.paper.placement import order_id_for
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
    # The next order is accepted (its id returned), then shows REJECTED in the book (RMS, margin).
    reject_after_accept: set[str] = field(default_factory=set)
    # A query by tag (Dhan's GET /orders/external/{id}) answers "none" although the order is in the
    # book: Dhan does so for an order still in TRANSIT (FACTS.md). Brokers without one: no effect.
    by_tag_misses: set[str] = field(default_factory=set)
    places: list[tuple[str, str]] = field(default_factory=list)  # (user, tag) of every accepted place
    before_place: Callable[[str, OrderRequest], None] | None = None


class FaultsMixin:
    """The fault switches over a broker client, keyed by its account's `user_id` (put it first in
    the bases). The errors come from the `_*_error` methods: a broker's subclass returns what its
    own adapter raises in that situation (FaultyAngel)."""

    faults: Faults
    user_id: str

    # --- the errors (the paper exchange's, shaped like Kite's) ---------------------------------------

    def _token_error(self) -> BrokerError:
        return TokenExpired("Incorrect `api_key` or `access_token`.")

    def _reads_error(self) -> BrokerError:
        return BrokerUnavailable("OMS unreachable")

    def _calculator_error(self) -> BrokerError:
        return BrokerUnavailable("calculator unreachable")

    def _modify_error(self) -> BrokerError:
        return OrderRejected("The order cannot be modified now.")

    def _rate_error(self) -> BrokerError:
        return RateLimited("Too many requests")

    def _unknown_error(self) -> BrokerError:
        return OutcomeUnknown("read timeout after send")

    # --- the calls ----------------------------------------------------------------------------------

    def _check_token(self) -> None:
        if self.user_id in self.faults.token_expired:
            raise self._token_error()

    def _check_reads(self) -> None:
        self._check_token()
        if self.user_id in self.faults.reads_down:
            raise self._reads_error()

    def funds(self):  # type: ignore[no-untyped-def]
        self._check_reads()
        return super().funds()  # type: ignore[misc]

    def orders(self):  # type: ignore[no-untyped-def]
        self._check_reads()
        if self.user_id in self.faults.hide_orders:
            return []
        return super().orders() + self.faults.extra_orders.get(self.user_id, [])  # type: ignore[misc]

    def positions(self):  # type: ignore[no-untyped-def]
        self._check_reads()
        return super().positions()  # type: ignore[misc]

    def _check_calculator(self) -> None:
        if self.user_id in self.faults.calculator_down:
            raise self._calculator_error()

    def order_margins(self, reqs):  # type: ignore[no-untyped-def]
        self._check_calculator()
        return super().order_margins(reqs)  # type: ignore[misc]

    def basket_margin(self, reqs):  # type: ignore[no-untyped-def]
        self._check_calculator()
        return super().basket_margin(reqs)  # type: ignore[misc]

    def ltp(self, keys):  # type: ignore[no-untyped-def]
        self._check_calculator()
        return super().ltp(keys)  # type: ignore[misc]

    def modify_order(self, order_id, **kwargs):  # type: ignore[no-untyped-def]
        self._check_token()
        if self.user_id in self.faults.modify_refused:
            raise self._modify_error()
        return super().modify_order(order_id, **kwargs)  # type: ignore[misc]

    def place_order(self, req: OrderRequest) -> str:
        self._check_token()
        if self.faults.before_place:
            self.faults.before_place(self.user_id, req)
        if self.user_id in self.faults.rate_limited_once:
            self.faults.rate_limited_once.discard(self.user_id)
            raise self._rate_error()
        if self.user_id in self.faults.unknown_not_placed:
            self.faults.unknown_not_placed.discard(self.user_id)
            raise self._unknown_error()
        if self.user_id in self.faults.reject_after_accept:
            self.faults.reject_after_accept.discard(self.user_id)
            order_id = self._store_rejected(req)
            self.faults.places.append((self.user_id, req.tag))
            return order_id
        order_id = super().place_order(req)  # type: ignore[misc]
        self.faults.places.append((self.user_id, req.tag))
        if self.user_id in self.faults.place_then_unknown:
            self.faults.place_then_unknown.discard(self.user_id)
            raise self._unknown_error()
        return order_id

    def _store_rejected(self, req: OrderRequest) -> str:
        """An order the broker took (200 and an id) and its RMS then rejected: in the book as
        REJECTED with nothing filled, as Kite shows a margin rejection after the place call."""
        with transaction.atomic():
            account = PaperAccount.objects.select_for_update().get(user_id=self.user_id)
            instrument = PaperInstrument.objects.get(exchange=req.exchange, tradingsymbol=req.tradingsymbol)
            now = timezone.now()
            account.order_seq += 1
            account.save(update_fields=["order_seq"])
            order_id = order_id_for(account, now)
            PaperOrder.objects.create(
                account=account,
                instrument=instrument,
                order_id=order_id,
                tag=req.tag,
                exchange=req.exchange,
                tradingsymbol=req.tradingsymbol,
                side=req.side,
                order_type=req.order_type,
                product=req.product,
                validity=req.validity,
                variety=req.variety,
                quantity=req.quantity,
                price=req.price or 0,
                trigger_price=req.trigger_price or 0,
                status=OrderStatus.REJECTED,
                status_message="RMS:Margin Exceeds, Required:0, Available:0 (injected after accept)",
                placed_at=now,
                updated_at=now,
            )
        return order_id


class FaultyBroker(FaultsMixin, PaperBroker):
    """A paper account with the fault switches."""


class FaultyAngel(FaultsMixin, AngelBroker):
    """An Angel One account (AngelBroker, the real SDK) with the fault switches, keyed by its
    client code, which the Angel simulator serves as the paper account of that user id (so an
    order stored REJECTED after accept shows in its Angel book). The errors are the ones the
    adapter raises (brokers/angel/errors.py): a dead session whose headless login Angel refuses,
    Angel's 403 rate-limit text, a read timeout on a write, AB1004 for a read, AB4001 for a modify."""

    @property
    def user_id(self) -> str:
        return self.client_code

    def _token_error(self) -> BrokerError:
        return TokenExpired("Angel One refused the login: AB1050: Invalid totp", code="login_refused")

    def _reads_error(self) -> BrokerError:
        return BrokerUnavailable("AB1004: Something Went Wrong, Please Try After Sometime")

    def _calculator_error(self) -> BrokerError:
        return BrokerUnavailable("AB1004: Something Went Wrong, Please Try After Sometime")

    def _modify_error(self) -> BrokerError:
        return OrderRejected("AB4001: The order cannot be modified now.")

    def _rate_error(self) -> BrokerError:
        return RateLimited(
            "Angel One refused the request (rate limit): Access denied because of exceeding access rate",
            http_status=403,
        )

    def _unknown_error(self) -> BrokerError:
        return OutcomeUnknown(f"ReadTimeout: Read timed out. (read timeout={self.timeout})")


class FaultyDhan(FaultsMixin, DhanBroker):
    """A Dhan account (DhanBroker, the real dhanhq SDK) with the fault switches, keyed by its client
    id, which the Dhan simulator serves as the paper account of that user id. The errors are the
    ones the adapter raises (brokers/dhan/errors.py): a dead token whose PIN + TOTP login Dhan
    refuses, DH-904, a timeout string on a write (unknown), DH-908 for a read, DH-906 for a modify."""

    @property
    def user_id(self) -> str:
        return self.client_id

    def _token_error(self) -> BrokerError:
        return TokenExpired(
            "Dhan refused the login: Failed to generate token via PIN/TOTP", code="login_refused"
        )

    def _reads_error(self) -> BrokerError:
        return BrokerUnavailable("DH-908: Server was not able to process API request")

    def _calculator_error(self) -> BrokerError:
        return BrokerUnavailable("DH-908: Server was not able to process API request")

    def _modify_error(self) -> BrokerError:
        return OrderRejected("DH-906: Incorrect request for order and cannot be processed.")

    def _rate_error(self) -> BrokerError:
        return RateLimited(
            "Dhan refused the request (rate limit): DH-904: Too many requests", http_status=429
        )

    def _unknown_error(self) -> BrokerError:
        return OutcomeUnknown(f"ReadTimeout: Read timed out. (read timeout={self.timeout})")

    def order_by_tag(self, tag: str) -> Order | None:
        """The adapter's query by correlation id under the same switches as the book: a dead token,
        reads down, a late book (nothing yet), injected orders; `by_tag_misses` answers none."""
        self._check_reads()
        if self.user_id in self.faults.hide_orders:
            return None
        found = super().order_by_tag(tag)
        if self.user_id in self.faults.by_tag_misses:
            return None  # asked, and answered 404 as for an order in TRANSIT
        if found is None:
            found = next((o for o in self.faults.extra_orders.get(self.user_id, []) if o.tag == tag), None)
        return found


class FaultyAlice(FaultsMixin, AliceBroker):
    """An Alice Blue account (AliceBroker, the real Ant-A3 SDK) with the fault switches, keyed by its
    user id, which the Alice Blue simulator serves as the paper account of that user id. The errors
    are the ones the adapter raises (brokers/alice/errors.py): EC087 for a dead session (the client
    must log in again), EC003 for a read, EC838 for a modify, HTTP 429 for the rate limit and a read
    timeout on a write (unknown)."""

    def _token_error(self) -> BrokerError:
        return TokenExpired("Alice Blue session refused: EC087: Session Expired", code="token_expired")

    def _reads_error(self) -> BrokerError:
        return BrokerUnavailable("EC003: An error occurred. Please try again later.")

    def _calculator_error(self) -> BrokerError:
        return BrokerUnavailable("EC003: An error occurred. Please try again later.")

    def _modify_error(self) -> BrokerError:
        return OrderRejected("EC838: Order cannot be modified.")

    def _rate_error(self) -> BrokerError:
        return RateLimited(
            "Alice Blue refused the request (rate limit): no error code: Too many requests", http_status=429
        )

    def _unknown_error(self) -> BrokerError:
        return OutcomeUnknown(
            f"ReadTimeout: HTTPSConnectionPool: Read timed out. (read timeout={self.timeout})"
        )


def serve_in_process(monkeypatch: Any, root: str, sim: Any) -> None:
    """Every `requests` call to a URL under `root` (Session.request, which requests.get, .post and
    the SDKs' own sessions all go through) answered by `sim.handle` in this thread, so the simulator
    sees the test's transaction; other URLs go on as before. Undone with `monkeypatch`."""
    import requests

    from lab.kite_sim.wire import Request

    previous = requests.Session.request
    root = root.rstrip("/")

    def request(
        self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if not (url == root or url.startswith(root + "/")):
            return previous(self, method, url, *args, **kwargs)
        names = ("params", "data", "headers", "cookies", "files", "auth")
        options = dict(zip(names, args, strict=False)) | kwargs
        prepared = self.prepare_request(
            requests.Request(
                method.upper(),
                url,
                params=options.get("params"),
                data=options.get("data"),
                json=options.get("json"),
                headers=options.get("headers"),
            )
        )
        parts = urlsplit(prepared.url or url)
        body = prepared.body or b""
        reply = sim.handle(
            Request(
                method=method.upper(),
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in prepared.headers.items()},
                body=body.encode() if isinstance(body, str) else body,
            )
        )
        response = requests.Response()
        response.status_code = reply.status
        response._content = reply.body
        response.headers["Content-Type"] = reply.content_type
        response.encoding = "utf-8"
        response.url = prepared.url or url
        response.request = prepared
        return response

    monkeypatch.setattr(requests.Session, "request", request)


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
