"""BrokerClient for Zerodha Kite, on the official kiteconnect SDK (kite/API.md).

One instance per account, holding the account's SDK client, kept warm across ticks and client
rebuilds (one per account and token) on the shared requests session of its egress route
(brokers.kite.egress: a connection pool per root, or per explicit proxy_url; the environment's
proxy settings read once). Writes on an instance go one at a time (its lock); reads may overlap.

Reads are retried (at most `max_read_attempts`, exponential backoff with jitter) on RateLimited and
BrokerUnavailable. Writes (place, modify, cancel) are sent once: a RateLimited write placed nothing
and is raised for the caller to re-send later; an OutcomeUnknown write must be looked up by tag.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from django.conf import settings
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from brokers.capabilities import Capabilities, capabilities_for
from brokers.credentials import BrokerCredentials
from brokers.errors import BrokerError, BrokerUnavailable, InputRejected, RateLimited
from brokers.kite import egress, params, parse
from brokers.kite.errors import MALFORMED, redact, simulator_refusal, translate
from brokers.kite.instruments import InstrumentCache, shared_cache
from brokers.simcreds import is_simulator_credential
from brokers.types import Funds, Instrument, InstrumentKey, MarginEstimate, Order, OrderRequest, Position

logger = logging.getLogger(__name__)

T = TypeVar("T")

LTP_BATCH = 1000  # instruments per /quote/ltp call
_SDK_FAILURES = (kex.KiteException, requests.RequestException, *MALFORMED)


_JITTER = random.Random()
SDK_CACHE_SIZE = 50_000  # KiteConnect clients kept warm (one per account and token)
_sdk_lock = threading.Lock()
_sdk_clients: OrderedDict[tuple[str, str, str, float, str], KiteConnect] = OrderedDict()


def _warm_sdk_client(
    api_key: str, access_token: str, *, root: str, timeout: float, proxy_url: str
) -> KiteConnect:
    """The SDK client of one account and token, kept across ticks and client rebuilds, on the
    shared session of its egress route (brokers.kite.egress): an explicit `proxy_url` is its own
    route; without one, the environment's proxy settings are read once, not on every call.

    A KiteConnect carries no per-call state (the account's headers are built on each call), so
    the KiteBroker instances of one account may share it."""
    key = (api_key, access_token, root, timeout, proxy_url)
    with _sdk_lock:
        kite = _sdk_clients.get(key)
        if kite is not None:
            _sdk_clients.move_to_end(key)
            return kite
    proxies = {"http": proxy_url, "https": proxy_url} if proxy_url else None
    kite = KiteConnect(api_key, access_token=access_token, root=root, timeout=timeout, proxies=proxies)
    kite.reqsession.close()
    kite.reqsession = egress.session_for(
        root, proxy_url, direct=not proxy_url and _simulated(api_key, access_token)
    )
    with _sdk_lock:
        kite = _sdk_clients.setdefault(key, kite)
        while len(_sdk_clients) > SDK_CACHE_SIZE:
            _sdk_clients.popitem(last=False)
    return kite


def _simulated(*credentials: str) -> bool:
    return any(is_simulator_credential(c) for c in credentials)


def forget_sdk_clients() -> None:
    """Drop the warm SDK clients (tests; after a change of settings)."""
    with _sdk_lock:
        _sdk_clients.clear()


class KiteBroker:
    """A Kite account as a brokers.base.BrokerClient."""

    @property
    def capabilities(self) -> Capabilities:
        """What Kite can do (the registered record: tests may replace it)."""
        return capabilities_for("kite")

    def __init__(
        self,
        *,
        api_key: str,
        access_token: str,
        root: str | None = None,
        timeout: float | None = None,
        proxy_url: str = "",
        algo_id: str | None = None,
        market_protection: int | None = None,
        user_id: str = "",
        instrument_cache: InstrumentCache | None = None,
        max_read_attempts: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 4.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.root = root or str(settings.KITE_API_ROOT)
        self.timeout = float(timeout or settings.KITE_TIMEOUT_S)
        self.algo_id = str(algo_id if algo_id is not None else settings.KITE_ALGO_ID)
        self.market_protection = int(
            market_protection if market_protection is not None else settings.KITE_MARKET_PROTECTION
        )
        self.user_id = user_id
        self.max_read_attempts = max(1, max_read_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._rng = rng or _JITTER  # backoff jitter only: one generator for all (seeding costs per client)
        self._lock = threading.Lock()
        self._secrets = self._secrets_of(access_token, proxy_url)
        self._instruments = instrument_cache or shared_cache(self.root)
        if urlsplit(self.root).path not in ("", "/"):
            logger.warning("Kite root %s has a path; the SDK drops it and calls the host root", self.root)
        self._refusal = simulator_refusal(root=self.root, credentials=(api_key, access_token))
        simulated = is_simulator_credential(api_key) or is_simulator_credential(access_token)
        # The simulator's credentials go straight to it: no account proxy, no proxy from the environment.
        self._kite = _warm_sdk_client(
            api_key,
            access_token,
            root=self.root,
            timeout=self.timeout,
            proxy_url="" if simulated else proxy_url,
        )

    @classmethod
    def for_credentials(cls, creds: BrokerCredentials) -> KiteBroker:
        """The client for one linked account; everything else comes from settings."""
        return cls(
            api_key=creds.api_key,
            access_token=creds.access_token,
            proxy_url=creds.proxy_url,
            user_id=creds.user_id,
        )

    def __repr__(self) -> str:  # never show the token
        return f"KiteBroker(user_id={self.user_id!r}, root={self.root!r})"

    @staticmethod
    def _secrets_of(access_token: str, proxy_url: str) -> tuple[str, ...]:
        secrets = [access_token]
        if proxy_url:
            parts = urlsplit(proxy_url)
            secrets += [proxy_url, parts.password or ""]
            if parts.password:
                secrets.append(parts.netloc)
        return tuple(s for s in secrets if s)

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[KiteConnect], T], *, write: bool) -> T:
        """Run one SDK call, translating its failures. Writes of one instance go one at a time
        (under its lock, in the order they were asked); reads may overlap (the master's funds and
        book go out together): the SDK client keeps no per-call state and the route's session is
        a thread-safe connection pool shared by every account. Credentials issued by the
        simulator are refused (before any request) for a root off this machine."""
        if self._refusal is not None:
            logger.warning("kite call for %s refused: %s", self.user_id, self._refusal.code)
            raise self._refusal
        try:
            if not write:
                return fn(self._kite)
            with self._lock:
                return fn(self._kite)
        except _SDK_FAILURES as exc:
            raise self._translate(exc, write=write) from self._cause(exc)

    def _translate(self, exc: BaseException, *, write: bool) -> BrokerError:
        return translate(exc, write=write, secrets=self._secrets)

    def _cause(self, exc: BaseException) -> BaseException | None:
        """`exc` as the cause to chain, or None when its text carries a secret (tracebacks get logged)."""
        text = f"{exc} {exc!r}"
        return None if any(secret in text for secret in self._secrets) else exc

    def _read(self, op: str, fetch: Callable[[KiteConnect], Any], convert: Callable[[Any], T]) -> T:
        """A read: fetch and convert, retried with backoff on RateLimited and BrokerUnavailable."""
        attempt = 1
        while True:
            try:
                payload = self._call(fetch, write=False)
                try:
                    return convert(payload)
                except MALFORMED as exc:
                    raise self._translate(exc, write=False) from self._cause(exc)
            except (RateLimited, BrokerUnavailable) as error:
                if attempt >= self.max_read_attempts:
                    logger.warning(
                        "kite %s for %s failed after %d attempts: %s", op, self.user_id, attempt, error
                    )
                    raise
                delay = self._backoff(attempt)
                logger.info(
                    "kite %s for %s failed (attempt %d of %d), retrying in %.2fs: %s",
                    op,
                    self.user_id,
                    attempt,
                    self.max_read_attempts,
                    delay,
                    error.code,
                )
                self._sleep(delay)
                attempt += 1

    def _backoff(self, attempt: int) -> float:
        """Equal-jitter exponential backoff: half the step fixed, half random."""
        step = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        return step / 2 + self._rng.uniform(0, step / 2)

    def _write(self, op: str, fn: Callable[[KiteConnect], Any]) -> str:
        """A write, sent exactly once; returns the order id Kite answered with."""
        try:
            return self._call(lambda kite: parse.parse_order_id(fn(kite)), write=True)
        except BrokerError as error:
            logger.warning("kite %s for %s failed: %s", op, self.user_id, error)
            raise

    def _reject_input(self, exc: ValueError) -> InputRejected:
        return InputRejected(redact(str(exc), self._secrets))

    # --- reads ---------------------------------------------------------------------------------

    def funds(self) -> Funds:
        return self._read("margins", lambda kite: kite.margins(), parse.parse_funds)

    def orders(self) -> list[Order]:
        return self._read("orders", lambda kite: kite.orders(), parse.parse_orders)

    def order_history(self, order_id: str) -> list[Order]:
        """Every state of one order, oldest first (Kite-specific; not in BrokerClient)."""
        return self._read(
            "order_history", lambda kite: kite.order_history(order_id=order_id), parse.parse_orders
        )

    def positions(self) -> list[Position]:
        return self._read("positions", lambda kite: kite.positions(), parse.parse_positions)

    def order_margins(self, reqs: Sequence[OrderRequest]) -> list[MarginEstimate]:
        if not reqs:
            return []
        body = [params.margin_params(req) for req in reqs]
        return self._read("order_margins", lambda kite: kite.order_margins(body), parse.parse_order_margins)

    def basket_margin(self, reqs: Sequence[OrderRequest]) -> MarginEstimate:
        if not reqs:
            return MarginEstimate(total=Decimal("0"))
        body = [params.margin_params(req) for req in reqs]
        # "true" as a string: the SDK passes it through to the query string as is, where a
        # Python bool would go out as "True" (API.md §8, §16.7).
        return self._read(
            "basket_margin",
            lambda kite: kite.basket_order_margins(body, consider_positions="true"),
            parse.parse_basket_margin,
        )

    def instruments(self) -> list[Instrument]:
        """Today's instruments dump (downloaded once per trading day, shared by all accounts)."""
        return self._instruments.all(self._download_instruments)

    def instrument(self, key: InstrumentKey) -> Instrument | None:
        """One instrument from today's dump, or None when Kite does not list it."""
        return self._instruments.get(key, self._download_instruments)

    def _download_instruments(self) -> list[Instrument]:
        return self._read("instruments", lambda kite: kite.instruments(), parse.parse_instruments)

    def ltp(self, keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
        """Last prices; instruments Kite does not know are absent from the result."""
        wanted = list(dict.fromkeys(keys))
        prices: dict[InstrumentKey, Decimal] = {}
        for start in range(0, len(wanted), LTP_BATCH):
            batch = wanted[start : start + LTP_BATCH]
            prices.update(self._ltp_batch(batch))
        return prices

    def _ltp_batch(self, batch: list[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
        names = [str(key) for key in batch]

        def convert(payload: Any) -> dict[InstrumentKey, Decimal]:
            return parse.parse_ltp(payload, batch)

        return self._read("ltp", lambda kite: kite.ltp(names), convert)

    # --- writes --------------------------------------------------------------------------------

    def place_order(self, req: OrderRequest) -> str:
        """Send one order (never retried). Slicing above the freeze quantity is the caller's job
        (replication.sizing: slice_quantity)."""
        try:
            arguments = params.order_params(
                req, market_protection=self.market_protection, algo_id=self.algo_id
            )
        except ValueError as exc:
            raise self._reject_input(exc) from None
        return self._write("place_order", lambda kite: kite.place_order(**arguments))

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
        try:
            arguments = params.modify_params(
                variety=variety,
                order_id=order_id,
                quantity=quantity,
                price=price,
                trigger_price=trigger_price,
                order_type=order_type,
                market_protection=self.market_protection,
            )
        except ValueError as exc:
            raise self._reject_input(exc) from None
        return self._write("modify_order", lambda kite: kite.modify_order(**arguments))

    def cancel_order(self, order_id: str, *, variety: str = "regular") -> str:
        return self._write("cancel_order", lambda kite: kite.cancel_order(variety=variety, order_id=order_id))
