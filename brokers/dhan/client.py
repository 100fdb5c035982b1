"""BrokerClient for Dhan, on the official dhanhq SDK (docs/dhan.md).

One instance per account, holding one SDK connection; calls are serialised by the instance's lock.
With a stored PIN and TOTP secret the instance makes its own 24-hour access token
(`generateAccessToken`) when it has none, when it is older than 24 hours, or when Dhan refuses it
(once per call); without them a dead token is TokenExpired and the engine moves that account to
`needs_login`.

The SDK never raises (brokers.dhan.sdk, brokers.dhan.errors): every answer is read here, with the
adapter's own timeout (DHAN_TIMEOUT_S), and a write whose answer was lost is OutcomeUnknown. Such
an order is found again by its correlation id (`order_by_tag`, GET /orders/external/{id}) or in
the order book (`orders()`, which carries every order's correlationId). Reads are retried on
RateLimited and BrokerUnavailable; writes are sent once, inside Dhan's order budget
(brokers.dhan.budget).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import requests
from django.conf import settings

from brokers.capabilities import DHAN, Capabilities
from brokers.credentials import BrokerCredentials
from brokers.dhan import parse, vocab
from brokers.dhan.budget import WriteBudget, budget_for
from brokers.dhan.errors import MALFORMED, failure_error, redact, remarks_code, succeeded
from brokers.dhan.scrip import Scrip, ScripCache, ScripMaster, scrips_from_csv, shared_cache
from brokers.dhan.sdk import connection, generate_token, session_of, set_token
from brokers.dhan.session import DhanSession, session_expiry, session_from_login, totp_code
from brokers.errors import BrokerError, BrokerUnavailable, InputRejected, RateLimited, TokenExpired
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

DEFAULT_ROOT = "https://api.dhan.co"
DEFAULT_AUTH_ROOT = "https://auth.dhan.co"
DEFAULT_SCRIP_MASTER_URL = "https://images.dhan.co/api-data/api-scrip-master.csv"
DEFAULT_TIMEOUT_S = 7.0
SCRIP_MASTER_TIMEOUT_S = 60.0
API_VERSION = "/v2"
LTP_BATCH = 1000  # instruments per /marketfeed/ltp call


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, None) or default


def scrip_master_url(root: str) -> str:
    """The master next to a simulator, Dhan's published compact CSV otherwise."""
    configured = _setting("DHAN_SCRIP_MASTER_URL", "")
    if configured:
        return str(configured)
    if is_loopback_url(root):
        return root.rstrip("/") + "/api-data/api-scrip-master.csv"
    return DEFAULT_SCRIP_MASTER_URL


def auth_root_for(root: str) -> str:
    """Where `generateAccessToken` lives: the simulator itself, else auth.dhan.co."""
    return root if is_loopback_url(root) else DEFAULT_AUTH_ROOT


def download_scrip_master(url: str, *, timeout: float = SCRIP_MASTER_TIMEOUT_S) -> ScripMaster:
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        return ScripMaster(scrips_from_csv(response.text))
    except (requests.RequestException, *MALFORMED) as exc:
        raise BrokerUnavailable(f"Dhan security-id master unavailable: {type(exc).__name__}: {exc}") from None


class DhanBroker:
    """A Dhan account as a brokers.base.BrokerClient."""

    capabilities: Capabilities = DHAN

    def __init__(
        self,
        *,
        client_id: str,
        access_token: str = "",
        pin: str = "",
        totp_secret: str = "",
        api_key: str = "",
        root: str | None = None,
        auth_root: str | None = None,
        timeout: float | None = None,
        proxy_url: str = "",
        token_obtained_at: datetime | None = None,
        scrip_cache: ScripCache | None = None,
        scrip_url: str | None = None,
        budget: WriteBudget | None = None,
        max_read_attempts: int = 3,
        backoff_base_s: float = 0.3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.root = (root or str(_setting("DHAN_API_ROOT", DEFAULT_ROOT))).rstrip("/")
        self.auth_root = (auth_root or auth_root_for(self.root)).rstrip("/")
        self.timeout = float(timeout or _setting("DHAN_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        self.client_id = client_id.strip()
        self.max_read_attempts = max(1, max_read_attempts)
        self.backoff_base_s = backoff_base_s
        self._pin = pin
        self._totp_secret = totp_secret
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._budget = budget or budget_for(self.client_id)
        self._scrip_url = scrip_url or scrip_master_url(self.root)
        self._scrips = scrip_cache or shared_cache(self._scrip_url)
        self._sent: dict[str, Order] = {}
        self.simulated = any(is_simulator_credential(v) for v in (api_key, access_token) if v)
        self._refusal: BrokerError | None = None
        if self.simulated and not (is_loopback_url(self.root) and is_loopback_url(self.auth_root)):
            self._refusal = BrokerError(
                "these Dhan credentials were issued by the Dhan simulator; refusing to send them off this "
                "machine. Point DHAN_API_ROOT at the simulator (http://127.0.0.1:8003)",
                code="simulator_credentials",
            )
        if proxy_url and not self.simulated:
            self._proxies: dict[str, str | None] = {"http": proxy_url, "https": proxy_url}
        else:
            self._proxies = {"http": None, "https": None}  # never an environment proxy for the simulator
        self._secrets: tuple[str, ...] = tuple(
            s for s in (access_token, pin, totp_secret, proxy_url, api_key) if s
        )
        self._conn = connection(
            client_id=self.client_id,
            access_token=access_token,
            base_url=self.root + API_VERSION,
            timeout=self.timeout,
            proxies=self._proxies,
        )
        self._session: DhanSession | None = None
        if access_token:
            obtained = token_obtained_at or self._clock()
            self._adopt(DhanSession(self.client_id, access_token, session_expiry(obtained)))

    @classmethod
    def for_credentials(cls, creds: BrokerCredentials) -> DhanBroker:
        return cls(
            client_id=creds.user_id,
            access_token=creds.access_token,
            pin=creds.pin,
            totp_secret=creds.totp_secret,
            api_key=creds.api_key,
            proxy_url=creds.proxy_url,
        )

    def __repr__(self) -> str:
        return f"DhanBroker(client_id={self.client_id!r}, root={self.root!r})"

    # --- session -------------------------------------------------------------------------------

    @property
    def can_log_in(self) -> bool:
        return bool(self._pin and self._totp_secret)

    @property
    def session(self) -> DhanSession | None:
        return self._session

    @property
    def access_token(self) -> str:
        """The live token (the order stream logs in with it; never log it)."""
        return self._session.access_token if self._session else ""

    def _adopt(self, session: DhanSession) -> None:
        self._session = session
        set_token(self._conn, session.access_token)
        self._secrets = (*self._secrets, session.access_token)

    def login(self) -> DhanSession:
        """A new access token from the client id, PIN and the current TOTP code; it is kept."""
        with self._lock:
            return self._login()

    def _login(self) -> DhanSession:
        if self._refusal is not None:
            raise self._refusal
        if not self.can_log_in:
            raise TokenExpired(
                f"Dhan access token of {self.client_id} is missing or dead and no PIN and TOTP secret are "
                "stored: generate a new one on web.dhan.co or store them",
                code="token_expired",
            )
        now = self._clock()
        code = totp_code(self._totp_secret, now)
        secrets = (*self._secrets, code)
        try:
            body = generate_token(
                client_id=self.client_id,
                pin=self._pin,
                totp=code,
                auth_root=self.auth_root,
                timeout=self.timeout,
                proxies=self._proxies,
            )
        except (requests.RequestException, ValueError) as exc:
            text = redact(f"{type(exc).__name__}: {exc}", secrets)
            raise BrokerUnavailable(f"Dhan login unavailable: {text}") from None
        except Exception as exc:  # noqa: BLE001 - the SDK raises a bare Exception for every refusal
            text = redact(str(exc), secrets)
            # Never retried: a wrong PIN or TOTP tried again and again locks the client out.
            raise TokenExpired(f"Dhan refused the login: {text}", code="login_refused") from None
        session = session_from_login(body, client_id=self.client_id, now=now)
        self._adopt(session)
        logger.info("dhan login for %s: token until %s", self.client_id, session.expires_at.isoformat())
        return session

    def _ensure_session(self) -> None:
        if self._session is None or not self._session.alive(self._clock()):
            self._session = None
            self._login()

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[Any], Any], *, write: bool, pace: Callable[[], None] | None = None) -> Any:
        """One SDK call under the lock: the session first (logging in if it may), the budget, the
        call; a token refusal logs in again and repeats the call once (refused at the door, nothing
        was done). Returns the answer's `data`."""
        if self._refusal is not None:
            raise self._refusal
        for attempt in (1, 2):
            with self._lock:
                self._ensure_session()
                if pace is not None:
                    pace()
                recorder = session_of(self._conn)
                recorder.reset()
                body = fn(self._conn)
                if succeeded(body):
                    return body.get("data")
                error = failure_error(
                    body,
                    write=write,
                    cause=recorder.last_error,
                    http_status=recorder.last_status,
                    secrets=self._secrets,
                )
                if isinstance(error, TokenExpired) and attempt == 1 and self.can_log_in:
                    logger.info(
                        "dhan token of %s refused (%s): logging in again", self.client_id, remarks_code(body)
                    )
                    self._session = None
                    continue
                raise error
        raise AssertionError("unreachable")

    def _read(self, op: str, fn: Callable[[Any], Any], convert: Callable[[Any], T]) -> T:
        attempt = 1
        while True:
            try:
                data = self._call(fn, write=False)
                try:
                    return convert(data)
                except MALFORMED as exc:
                    raise BrokerUnavailable(
                        redact(f"malformed {op} answer ({type(exc).__name__}: {exc})", self._secrets)
                    ) from None
            except (RateLimited, BrokerUnavailable) as error:
                if attempt >= self.max_read_attempts:
                    logger.warning(
                        "dhan %s for %s failed after %d attempts: %s", op, self.client_id, attempt, error.code
                    )
                    raise
                delay = self.backoff_base_s * 2 ** (attempt - 1)
                self._sleep(delay / 2 + self._rng.uniform(0, delay / 2))
                attempt += 1

    def _write(self, op: str, fn: Callable[[Any], Any]) -> str:
        try:
            data = self._call(fn, write=True, pace=self._budget.take)
            try:
                return parse.order_id_of(data)
            except MALFORMED as exc:
                raise BrokerError(
                    f"{op}: answer without an order id ({type(exc).__name__})", code="outcome_unknown"
                ) from None
        except BrokerError as error:
            logger.warning("dhan %s for %s failed: %s", op, self.client_id, error.code)
            raise

    # --- instruments ---------------------------------------------------------------------------

    def scrip_master(self) -> ScripMaster:
        return self._scrips.get(
            lambda: download_scrip_master(self._scrip_url, timeout=max(self.timeout, SCRIP_MASTER_TIMEOUT_S))
        )

    def instruments(self) -> list[Instrument]:
        return self.scrip_master().instruments()

    def instrument(self, key: InstrumentKey) -> Instrument | None:
        scrip = self.scrip_master().by_key(key)
        return scrip.instrument if scrip else None

    def _scrip(self, exchange: str, tradingsymbol: str) -> Scrip:
        key = InstrumentKey(exchange.upper(), tradingsymbol.upper())
        scrip = self.scrip_master().by_key(key)
        if scrip is None:
            raise InputRejected(f"Dhan does not list {key}", code="instrument_not_listed")
        return scrip

    # --- reads ---------------------------------------------------------------------------------

    def funds(self) -> Funds:
        return self._read("fund limit", lambda c: c.get_fund_limits(), parse.parse_funds)

    def orders(self) -> list[Order]:
        master = self.scrip_master()
        return self._read("order list", lambda c: c.get_order_list(), lambda d: parse.parse_orders(d, master))

    def positions(self) -> list[Position]:
        master = self.scrip_master()
        return self._read(
            "positions", lambda c: c.get_positions(), lambda d: parse.parse_positions(d, master)
        )

    def order_by_tag(self, tag: str) -> Order | None:
        """The order carrying correlation id `tag` (GET /orders/external/{id}); None when Dhan has
        none (DH-907 / 404: unknown, or still in TRANSIT: look again later, never re-send blindly)."""
        if not tag:
            return None
        master = self.scrip_master()
        try:
            found = self._read(
                "order by correlation id",
                lambda c: c.get_order_by_correlationID(tag),
                lambda d: parse.parse_orders(d, master),
            )
        except InputRejected as exc:
            if exc.code == "not_found" or exc.http_status == 404:
                return None
            raise
        matching = [o for o in found if o.tag == tag] or found
        return matching[0] if matching else None

    def order_margins(self, reqs: Sequence[OrderRequest]) -> list[MarginEstimate]:
        """Each order alone (`/margincalculator`)."""
        estimates = []
        for req in reqs:
            scrip = self._scrip(req.exchange, req.tradingsymbol)
            args = (
                scrip.security_id,
                scrip.segment,
                req.side.value,
                req.quantity,
                vocab.PRODUCT_TO_DHAN[req.product],
                float(req.price or 0),
                float(req.trigger_price or 0),
            )

            def call(c: Any, args: tuple[Any, ...] = args) -> Any:
                return c.margin_calculator(*args)

            estimates.append(self._read("margin", call, parse.parse_margin))
        return estimates

    def basket_margin(self, reqs: Sequence[OrderRequest]) -> MarginEstimate:
        """`/margincalculator/multi` with the account's positions (includePosition) and its hedge
        benefit; open orders are not included."""
        if not reqs:
            return MarginEstimate(total=Decimal("0"))
        legs = []
        for req in reqs:
            scrip = self._scrip(req.exchange, req.tradingsymbol)
            legs.append(
                parse.margin_leg(
                    segment=scrip.segment,
                    security_id=scrip.security_id,
                    side=req.side,
                    quantity=req.quantity,
                    product=req.product,
                    price=req.price or Decimal("0"),
                    trigger=req.trigger_price or Decimal("0"),
                )
            )
        return self._read(
            "multi margin",
            lambda c: c.margin_calculator_multi(legs, include_position=True, include_order=False),
            parse.parse_multi_margin,
        )

    def ltp(self, keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
        master = self.scrip_master()
        wanted: dict[tuple[str, str], InstrumentKey] = {}
        for key in dict.fromkeys(keys):
            scrip = master.by_key(key)
            if scrip is not None:
                wanted[(scrip.segment, scrip.security_id)] = key
        prices: dict[InstrumentKey, Decimal] = {}
        items = list(wanted)
        for start in range(0, len(items), LTP_BATCH):
            securities: dict[str, list[int]] = {}
            for segment, security_id in items[start : start + LTP_BATCH]:
                securities.setdefault(segment, []).append(int(security_id))

            def quote(c: Any, securities: dict[str, list[int]] = securities) -> Any:
                return c.ticker_data(securities)

            prices.update(self._read("ltp", quote, lambda d: parse.parse_ltp(d, wanted)))
        return prices

    # --- writes --------------------------------------------------------------------------------

    def _check_tag(self, tag: str) -> None:
        if tag and not self.capabilities.fits_tag(tag):
            raise InputRejected(
                f"order tag {tag!r}: Dhan takes at most {self.capabilities.tag.max_length} of "
                f"[{self.capabilities.tag.charset}]",
                code="tag_invalid",
            )

    def place_order(self, req: OrderRequest) -> str:
        """Send one order, never retried. `correlationId` carries the engine's tag. MARKET orders go
        as they are: Dhan turns them into LIMIT orders with its market price protection."""
        self._check_tag(req.tag)
        scrip = self._scrip(req.exchange, req.tradingsymbol)
        try:
            order_type = vocab.ORDER_TYPE_TO_DHAN[req.order_type]
            product = vocab.PRODUCT_TO_DHAN[req.product]
            validity = vocab.VALIDITY_TO_DHAN[req.validity]
        except KeyError as exc:
            raise InputRejected(f"Dhan has no {exc.args[0]}", code="input_rejected") from None
        price = float(req.price or 0) if req.order_type in (OrderType.LIMIT, OrderType.SL) else 0.0
        trigger = float(req.trigger_price or 0)

        def place(c: Any) -> Any:
            return c.place_order(
                security_id=scrip.security_id,
                exchange_segment=scrip.segment,
                transaction_type=req.side.value,
                quantity=req.quantity,
                order_type=order_type,
                product_type=product,
                price=price,
                trigger_price=trigger,
                validity=validity,
                tag=req.tag or None,
            )

        order_id = self._write("place_order", place)
        self._sent[order_id] = Order(
            order_id=order_id,
            exchange=scrip.exchange,
            tradingsymbol=scrip.key.tradingsymbol,
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

    def _known_order(self, order_id: str) -> Order:
        known = self._sent.get(order_id)
        if known is not None:
            return known
        for order in self.orders():
            if order.order_id == order_id:
                return order
        raise InputRejected(f"order {order_id} is not in the Dhan order book", code="order_not_found")

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
        """Dhan wants order type, quantity, price, trigger and validity together: the rest is what
        this client last sent, else the order book."""
        current = self._known_order(order_id)
        try:
            new_type = OrderType(order_type) if order_type else current.order_type
        except ValueError:
            raise InputRejected(f"unknown order type {order_type!r}") from None
        new_price = price if price is not None else current.price
        if new_type not in (OrderType.LIMIT, OrderType.SL):
            new_price = Decimal("0")
        new_trigger = trigger_price if trigger_price is not None else current.trigger_price
        new_quantity = quantity if quantity is not None else current.quantity
        dhan_type = vocab.ORDER_TYPE_TO_DHAN[new_type]
        validity = vocab.VALIDITY_TO_DHAN.get(current.validity, "DAY")

        def modify(c: Any) -> Any:
            return c.modify_order(
                order_id, dhan_type, "", new_quantity, float(new_price), float(new_trigger), 0, validity
            )

        answer = self._write("modify_order", modify)
        self._sent[order_id] = replace(
            current, order_type=new_type, price=new_price, trigger_price=new_trigger, quantity=new_quantity
        )
        return answer

    def cancel_order(self, order_id: str, *, variety: str = "regular") -> str:
        return self._write("cancel_order", lambda c: c.cancel_order(order_id))
