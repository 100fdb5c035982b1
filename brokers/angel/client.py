"""BrokerClient for Angel One, on the official smartapi-python SDK (docs/angel.md).

One instance per account, holding one SDK connection; calls are serialised by the instance's lock.
The instance logs in by itself (client code, PIN, TOTP secret) when it has no live session or Angel
says the session is dead, once per call; without a stored PIN and TOTP secret a dead session is
TokenExpired, and the engine moves that account to `needs_login`.

Reads are retried on RateLimited and BrokerUnavailable. Writes (place, modify, cancel) are sent
once, inside Angel's order budget (brokers.angel.budget); an OutcomeUnknown write must be looked up
by its tag in the order book (`orders()`), which Angel allows once a second.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import requests
from django.conf import settings

from brokers.angel import parse, vocab
from brokers.angel.budget import Budgets, budgets_for
from brokers.angel.errors import MALFORMED, envelope_error, error_code, redact, succeeded, translate
from brokers.angel.scrip import Scrip, ScripCache, ScripMaster, scrips_from_rows, shared_cache
from brokers.angel.sdk import SDK_ERRORS, connection
from brokers.angel.session import AngelSession, bare_jwt, session_expiry, session_from_login, totp_code
from brokers.capabilities import ANGEL, Capabilities
from brokers.credentials import BrokerCredentials
from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    InputRejected,
    RateLimited,
    TokenExpired,
)
from brokers.simcreds import is_loopback_url, is_simulator_credential
from brokers.types import (
    Funds,
    Instrument,
    InstrumentKey,
    MarginEstimate,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ROOT = "https://apiconnect.angelone.in"
DEFAULT_SCRIP_MASTER_URL = "https://margincalculator.angelone.in/OpenAPI_File/files/OpenAPIScripMaster.json"
DEFAULT_TIMEOUT_S = 7.0
SCRIP_MASTER_TIMEOUT_S = 60.0
LTP_BATCH = 50  # tokens per market/v1/quote call
TAG_MAX = ANGEL.tag.max_length  # AB4008: "ordertag length should be less than 20 characters"
LOGIN_UNAVAILABLE = frozenset({"AB1004", "AB2000", "AB2001"})  # "try after sometime": not a refusal
TAG_CHARS = re.compile(r"[A-Za-z0-9]+")
_FAILURES: tuple[type[BaseException], ...] = (*SDK_ERRORS, requests.RequestException, *MALFORMED)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, None) or default


def scrip_master_url(root: str) -> str:
    """The scrip master next to a simulator, Angel's published file otherwise."""
    configured = _setting("ANGEL_SCRIP_MASTER_URL", "")
    if configured:
        return str(configured)
    if is_loopback_url(root):
        return root.rstrip("/") + "/OpenAPI_File/files/OpenAPIScripMaster.json"
    return DEFAULT_SCRIP_MASTER_URL


def download_scrip_master(url: str, *, timeout: float = SCRIP_MASTER_TIMEOUT_S) -> ScripMaster:
    """Fetch and index the scrip master (a JSON array, some 100 MB at Angel)."""
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        rows = response.json()
        if not isinstance(rows, list):
            raise TypeError("the scrip master is not a JSON array")
        return ScripMaster(scrips_from_rows(rows))
    except (requests.RequestException, *MALFORMED) as exc:
        raise BrokerUnavailable(f"Angel One scrip master unavailable: {type(exc).__name__}: {exc}") from None


def _quote(tokens: dict[str, list[str]]) -> Callable[[Any], Any]:
    def fetch(conn: Any) -> Any:
        return conn.getMarketData("LTP", tokens)

    return fetch


class AngelBroker:
    """An Angel One account as a brokers.base.BrokerClient."""

    capabilities: Capabilities = ANGEL

    def __init__(
        self,
        *,
        api_key: str,
        client_code: str,
        pin: str = "",
        totp_secret: str = "",
        access_token: str = "",
        root: str | None = None,
        timeout: float | None = None,
        proxy_url: str = "",
        scrip_cache: ScripCache | None = None,
        scrip_url: str | None = None,
        budgets: Budgets | None = None,
        max_read_attempts: int = 3,
        backoff_base_s: float = 0.5,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.root = (root or str(_setting("ANGEL_API_ROOT", DEFAULT_ROOT))).rstrip("/")
        self.timeout = float(timeout or _setting("ANGEL_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        self.client_code = client_code.strip().upper()
        self.max_read_attempts = max(1, max_read_attempts)
        self.backoff_base_s = backoff_base_s
        self._pin = pin
        self._totp_secret = totp_secret
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._budgets = budgets or budgets_for(self.client_code)
        self._scrip_url = scrip_url or scrip_master_url(self.root)
        self._scrips = scrip_cache or shared_cache(self._scrip_url)
        # Orders this client placed or modified, as last sent: a modify (Angel wants the whole order
        # again) and a cancel (it wants the variety) need no book read for them.
        self._sent: dict[str, Order] = {}
        simulated = any(is_simulator_credential(v) for v in (api_key, access_token) if v)
        self._refusal: BrokerError | None = None
        if simulated and not is_loopback_url(self.root):
            self._refusal = BrokerError(
                "these Angel One credentials were issued by the Angel simulator; refusing to send them "
                "off this machine. Point ANGEL_API_ROOT at the simulator (http://127.0.0.1:8002)",
                code="simulator_credentials",
            )
        proxies: dict[str, str | None]
        if proxy_url and not simulated:
            proxies = {"http": proxy_url, "https": proxy_url}
        else:
            proxies = {"http": None, "https": None}  # never a proxy from the environment for the simulator
        self._secrets = tuple(s for s in (access_token, pin, totp_secret, proxy_url, api_key) if s)
        self._conn = connection(api_key=api_key, root=self.root, timeout=self.timeout, proxies=proxies)
        self._session: AngelSession | None = None
        if access_token:
            self._adopt(
                AngelSession(
                    client_code=self.client_code,
                    jwt_token=bare_jwt(access_token),
                    refresh_token="",
                    feed_token="",
                    expires_at=session_expiry(self._clock()),
                )
            )

    @classmethod
    def for_credentials(cls, creds: BrokerCredentials) -> AngelBroker:
        return cls(
            api_key=creds.api_key,
            client_code=creds.user_id,
            pin=creds.pin,
            totp_secret=creds.totp_secret,
            access_token=creds.access_token,
            proxy_url=creds.proxy_url,
        )

    def __repr__(self) -> str:
        return f"AngelBroker(client_code={self.client_code!r}, root={self.root!r})"

    # --- session -------------------------------------------------------------------------------

    @property
    def can_log_in(self) -> bool:
        return bool(self._pin and self._totp_secret)

    @property
    def session(self) -> AngelSession | None:
        """The live session (the caller may store its token; never log it)."""
        return self._session

    def _adopt(self, session: AngelSession) -> None:
        self._session = session
        self._conn.access_token = session.jwt_token
        self._conn.refresh_token = session.refresh_token or None
        self._secrets = (*self._secrets, session.jwt_token, session.refresh_token)

    def login(self) -> AngelSession:
        """Log in with the client code, PIN and the current TOTP code; the session is kept."""
        with self._lock:
            return self._login()

    def _login(self) -> AngelSession:
        if self._refusal is not None:
            raise self._refusal
        if not self.can_log_in:
            raise TokenExpired(
                f"Angel One session for {self.client_code} is missing or dead and no PIN and TOTP secret "
                "are stored: log in again",
                code="token_expired",
            )
        now = self._clock()
        code = totp_code(self._totp_secret, now)
        self._budgets.login.take()
        self._conn.access_token = None
        self._conn.refresh_token = None
        try:
            body = self._conn.generateSession(self.client_code, self._pin, code)
        except _FAILURES as exc:
            raise translate(exc, write=False, sdk_errors=SDK_ERRORS, secrets=self._secrets) from None
        if not succeeded(body):
            error = envelope_error(body, write=False, secrets=self._secrets)
            if error_code(body) in LOGIN_UNAVAILABLE:
                raise error
            # Never retried: a wrong PIN or TOTP tried again and again locks the client out.
            raise TokenExpired(f"Angel One refused the login: {error.message}", code="login_refused")
        data = body.get("data") if isinstance(body, dict) else None
        profile_code = str((data or {}).get("clientcode") or "").strip().upper()
        if profile_code and profile_code != self.client_code:
            raise BrokerError(f"logged in as {profile_code}, not {self.client_code}", code="wrong_client")
        session = session_from_login(self._conn, client_code=self.client_code, now=now)
        self._adopt(session)
        logger.info("angel login for %s: session until %s", self.client_code, session.expires_at.isoformat())
        return session

    def _ensure_session(self) -> None:
        if self._session is None or not self._session.alive(self._clock()):
            self._session = None
            self._login()

    # --- plumbing ------------------------------------------------------------------------------

    def _call(
        self,
        fn: Callable[[Any], Any],
        *,
        write: bool,
        pace: Callable[[], None] | None = None,
    ) -> Any:
        """One SDK call under the lock: the session first (logging in if it may), the budget, the
        call; a token refusal logs in again and repeats the call once (Angel refused it at the
        door, nothing was placed). Returns the envelope's `data`."""
        if self._refusal is not None:
            raise self._refusal
        for attempt in (1, 2):
            with self._lock:
                self._ensure_session()
                if pace is not None:
                    pace()
                try:
                    body = fn(self._conn)
                except _FAILURES as exc:
                    raise translate(exc, write=write, sdk_errors=SDK_ERRORS, secrets=self._secrets) from None
                if succeeded(body):
                    return body.get("data")
                error = envelope_error(body, write=write, secrets=self._secrets)
                if isinstance(error, TokenExpired) and attempt == 1 and self.can_log_in:
                    logger.info(
                        "angel session of %s refused (%s): logging in again",
                        self.client_code,
                        error_code(body),
                    )
                    self._session = None
                    continue
                raise error
        raise AssertionError("unreachable")

    def _read(
        self,
        op: str,
        fn: Callable[[Any], Any],
        convert: Callable[[Any], T],
        *,
        pace: Callable[[], None] | None = None,
    ) -> T:
        attempt = 1
        while True:
            try:
                data = self._call(fn, write=False, pace=pace)
                try:
                    return convert(data)
                except MALFORMED as exc:
                    raise BrokerUnavailable(
                        redact(f"malformed {op} answer ({type(exc).__name__}: {exc})", self._secrets)
                    ) from None
            except (RateLimited, BrokerUnavailable) as error:
                if attempt >= self.max_read_attempts:
                    logger.warning(
                        "angel %s for %s failed after %d attempts: %s",
                        op,
                        self.client_code,
                        attempt,
                        error.code,
                    )
                    raise
                delay = self.backoff_base_s * 2 ** (attempt - 1)
                self._sleep(delay / 2 + self._rng.uniform(0, delay / 2))
                attempt += 1

    def _write(self, op: str, fn: Callable[[Any], Any]) -> str:
        try:
            data = self._call(fn, write=True, pace=self._budgets.writes.take)
            try:
                return parse.order_id_of(data)
            except MALFORMED as exc:
                raise BrokerError(
                    f"{op}: answer without an order id ({type(exc).__name__})", code="outcome_unknown"
                ) from None
        except BrokerError as error:
            logger.warning("angel %s for %s failed: %s", op, self.client_code, error.code)
            raise

    # --- instruments ---------------------------------------------------------------------------

    def scrip_master(self) -> ScripMaster:
        return self._scrips.get(
            lambda: download_scrip_master(self._scrip_url, timeout=max(self.timeout, SCRIP_MASTER_TIMEOUT_S))
        )

    def instruments(self) -> list[Instrument]:
        """Today's scrip master as the engine's instruments (NSE-style keys)."""
        return self.scrip_master().instruments()

    def instrument(self, key: InstrumentKey) -> Instrument | None:
        scrip = self.scrip_master().by_key(key)
        return scrip.instrument if scrip else None

    def _scrip(self, exchange: str, tradingsymbol: str) -> Scrip:
        key = InstrumentKey(exchange.upper(), tradingsymbol.upper())
        scrip = self.scrip_master().by_key(key)
        if scrip is None:
            raise InputRejected(f"Angel One does not list {key}", code="instrument_not_listed")
        return scrip

    # --- reads ---------------------------------------------------------------------------------

    def funds(self) -> Funds:
        return self._read("rms", lambda c: c.rmsLimit(), parse.parse_funds, pace=self._budgets.rms.take)

    def orders(self) -> list[Order]:
        master = self.scrip_master()
        return self._read(
            "order book",
            lambda c: c.orderBook(),
            lambda d: parse.parse_orders(d, master),
            pace=self._budgets.book.take,
        )

    def positions(self) -> list[Position]:
        master = self.scrip_master()
        return self._read(
            "positions",
            lambda c: c.position(),
            lambda d: parse.parse_positions(d, master),
            pace=self._budgets.positions.take,
        )

    def order_margins(self, reqs: Sequence[OrderRequest]) -> list[MarginEstimate]:
        """Each order alone: one batch call per order (Angel's calculator prices a basket)."""
        return [self.basket_margin([req]) for req in reqs]

    def basket_margin(self, reqs: Sequence[OrderRequest]) -> MarginEstimate:
        """Angel's batch calculator: hedges inside the basket count; the account's positions do not."""
        if not reqs:
            return MarginEstimate(total=Decimal("0"))
        legs = []
        for req in reqs:
            scrip = self._scrip(req.exchange, req.tradingsymbol)
            price = req.price or Decimal("0")
            legs.append(
                (scrip.exchange, scrip.token, req.order_type, req.side, req.product, req.quantity, price)
            )
        body = parse.margin_positions(legs)
        return self._read("margin", lambda c: c.getMarginApi(body), parse.parse_margin)

    def ltp(self, keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
        master = self.scrip_master()
        wanted: dict[tuple[str, str], InstrumentKey] = {}
        for key in dict.fromkeys(keys):
            scrip = master.by_key(key)
            if scrip is not None:
                wanted[(scrip.exchange, scrip.token)] = key
        prices: dict[InstrumentKey, Decimal] = {}
        items = list(wanted)
        for start in range(0, len(items), LTP_BATCH):
            batch = items[start : start + LTP_BATCH]
            tokens: dict[str, list[str]] = {}
            for exchange, token in batch:
                tokens.setdefault(exchange, []).append(token)
            prices.update(self._read("ltp", _quote(tokens), lambda d: parse.parse_ltp(d, wanted)))
        return prices

    # --- writes --------------------------------------------------------------------------------

    def _check_tag(self, tag: str) -> None:
        if tag and (len(tag) > TAG_MAX or not TAG_CHARS.fullmatch(tag)):
            raise InputRejected(
                f"order tag {tag!r}: Angel One takes at most {TAG_MAX} letters and digits", code="tag_invalid"
            )

    def place_order(self, req: OrderRequest) -> str:
        """Send one order, never retried. `ordertag` carries the engine's tag (looked up in the book
        after an unknown outcome). MARKET orders go as they are: Angel adds its market protection."""
        self._check_tag(req.tag)
        scrip = self._scrip(req.exchange, req.tradingsymbol)
        try:
            order_type = vocab.ORDER_TYPE_TO_ANGEL[req.order_type]
            product = vocab.PRODUCT_TO_ANGEL[req.product]
            duration = vocab.VALIDITY_TO_ANGEL[req.validity]
        except KeyError as exc:
            raise InputRejected(f"Angel One has no {exc.args[0]}", code="input_rejected") from None
        variety = vocab.variety_for(req.order_type)
        params: dict[str, Any] = {
            "variety": variety,
            "tradingsymbol": scrip.angel_symbol,
            "symboltoken": scrip.token,
            "transactiontype": req.side.value,
            "exchange": scrip.exchange,
            "ordertype": order_type,
            "producttype": product,
            "duration": duration,
            "price": str(req.price or 0),
            "triggerprice": str(req.trigger_price or 0),
            "squareoff": "0",
            "stoploss": "0",
            "quantity": str(req.quantity),
        }
        if req.tag:
            params["ordertag"] = req.tag
        order_id = self._write("place_order", lambda c: c.placeOrderFullResponse(dict(params)))
        self._sent[order_id] = Order(
            order_id=order_id,
            exchange=req.exchange.upper(),
            tradingsymbol=req.tradingsymbol.upper(),
            side=req.side,
            order_type=req.order_type,
            product=req.product,
            quantity=req.quantity,
            status=OrderStatus.PENDING,
            price=req.price or Decimal("0"),
            trigger_price=req.trigger_price or Decimal("0"),
            validity=req.validity,
            tag=req.tag,
        )
        return order_id

    def _book_order(self, order_id: str) -> Order:
        for order in self.orders():
            if order.order_id == order_id:
                return order
        raise InputRejected(f"order {order_id} is not in the Angel One order book", code="order_not_found")

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
        """Angel wants the whole order again: the rest is what this client last sent, else the order
        book (1 read a second). The variety stays the order's own (Angel does not move an order
        between NORMAL and STOPLOSS)."""
        current = self._sent.get(order_id) or self._book_order(order_id)
        scrip = self._scrip(current.exchange, current.tradingsymbol)
        try:
            new_type = OrderType(order_type) if order_type else current.order_type
        except ValueError:
            raise InputRejected(f"unknown order type {order_type!r}") from None
        new_price = price if price is not None else current.price
        if new_type not in (OrderType.LIMIT, OrderType.SL):
            new_price = Decimal("0")
        new_trigger = trigger_price if trigger_price is not None else current.trigger_price
        new_quantity = quantity if quantity is not None else current.quantity
        params: dict[str, Any] = {
            "variety": vocab.variety_for(current.order_type),
            "orderid": order_id,
            "ordertype": vocab.ORDER_TYPE_TO_ANGEL[new_type],
            "producttype": vocab.PRODUCT_TO_ANGEL[current.product],
            "duration": vocab.VALIDITY_TO_ANGEL.get(current.validity, "DAY"),
            "price": str(new_price),
            "triggerprice": str(new_trigger),
            "quantity": str(new_quantity),
            "tradingsymbol": scrip.angel_symbol,
            "symboltoken": scrip.token,
            "exchange": scrip.exchange,
        }
        answer = self._write("modify_order", lambda c: c.modifyOrder(dict(params)))
        self._sent[order_id] = replace(
            current, order_type=new_type, price=new_price, trigger_price=new_trigger, quantity=new_quantity
        )
        return answer

    def cancel_order(self, order_id: str, *, variety: str = "regular") -> str:
        current = self._sent.get(order_id) or self._book_order(order_id)
        angel_variety = vocab.variety_for(current.order_type)
        return self._write("cancel_order", lambda c: c.cancelOrder(order_id, angel_variety))
