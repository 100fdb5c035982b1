"""BrokerClient for Alice Blue, on its current SDK Ant-A3 TradeHub (docs/alice.md).

One instance per account, holding one SDK object; calls are serialised by the instance's lock.
The account's `access_token` is the vendor `userSession` (long-lived); `vendor_login` exchanges an
auth code for a new one. A dead session (EC087, HTTP 401) is TokenExpired: the engine moves that
account to `needs_login` (the server cannot log in by itself: the client must log in at Alice Blue).

Every SDK call goes through `brokers.alice.sdk.Hub`, whose transport records the HTTP status and
body (the SDK's own hides them), with this adapter's timeout (ALICE_TIMEOUT_S). Reads are retried on
RateLimited and BrokerUnavailable. Writes (place, modify, cancel) are sent once, within the 10 a
second budget; an OutcomeUnknown write must be looked up by its tag (`orderTag`) in the order book.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

import requests
from django.conf import settings

from brokers.alice import parse, vocab
from brokers.alice.budget import Budgets, budgets_for
from brokers.alice.errors import (
    EMPTY_CODES,
    MALFORMED,
    body_error,
    error_code,
    redact,
    succeeded,
    transport_error,
)
from brokers.alice.scrip import (
    EXCHANGES,
    Contract,
    ContractCache,
    ContractMaster,
    contracts_from_rows,
    rows_from_csv,
    shared_cache,
)
from brokers.alice.sdk import Hub
from brokers.alice.session import AliceSession, jwt_expiry
from brokers.capabilities import ALICE, Capabilities
from brokers.credentials import BrokerCredentials
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

DEFAULT_ROOT = "https://a3.aliceblueonline.com/"
DEFAULT_CONTRACT_MASTER_URL = "https://v2api.aliceblueonline.com/restpy/static/contract_master/V2/"
DEFAULT_TIMEOUT_S = 7.0
CONTRACT_MASTER_TIMEOUT_S = 60.0
TAG_MAX = ALICE.tag.max_length  # EC971: "'orderTag' should not exceed 50 characters"
ALGO_ID_MAX = 12  # EC972
TAG_CHARS = re.compile(r"[A-Za-z0-9]+")
PROTECTED = frozenset({OrderType.MARKET, OrderType.SLM})


def _setting(name: str, default: Any) -> Any:
    value = getattr(settings, name, None)
    return default if value is None or value == "" else value


def contract_master_url(root: str) -> str:
    """The V2 contract master folder: next to a simulator, else Alice Blue's published one."""
    configured = _setting("ALICE_CONTRACT_MASTER_URL", "")
    if configured:
        return str(configured)
    if is_loopback_url(root):
        return root.rstrip("/") + "/restpy/static/contract_master/V2/"
    return DEFAULT_CONTRACT_MASTER_URL


def download_contract_master(
    url: str, *, exchanges: Sequence[str] = EXCHANGES, timeout: float = CONTRACT_MASTER_TIMEOUT_S
) -> ContractMaster:
    """Fetch and index the V2 contract master (`<url><EXCH>.csv` for each exchange)."""
    base = url if url.endswith("/") else url + "/"
    contracts: list[Contract] = []
    try:
        for exchange in exchanges:
            response = requests.get(f"{base}{exchange}.csv", timeout=timeout)
            response.raise_for_status()
            contracts.extend(contracts_from_rows(rows_from_csv(response.text)))
    except (requests.RequestException, *MALFORMED) as exc:
        raise BrokerUnavailable(
            f"Alice Blue contract master unavailable: {type(exc).__name__}: {exc}"
        ) from None
    return ContractMaster(contracts)


class AliceBroker:
    """An Alice Blue account as a brokers.base.BrokerClient."""

    capabilities: Capabilities = ALICE

    def __init__(
        self,
        *,
        user_id: str,
        api_key: str = "",
        access_token: str = "",
        root: str | None = None,
        timeout: float | None = None,
        proxy_url: str = "",
        contract_cache: ContractCache | None = None,
        contract_url: str | None = None,
        budgets: Budgets | None = None,
        market_protection: int | None = None,
        algo_id: str | None = None,
        max_read_attempts: int = 3,
        backoff_base_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.root = str(root or _setting("ALICE_API_ROOT", DEFAULT_ROOT)).rstrip("/") + "/"
        self.timeout = float(timeout or _setting("ALICE_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        self.user_id = user_id.strip().upper()
        self.app_code = api_key
        self.market_protection = int(
            market_protection if market_protection is not None else _setting("ALICE_MARKET_PROTECTION", 3)
        )
        self.algo_id = str(algo_id if algo_id is not None else _setting("ALICE_ALGO_ID", ""))
        self.max_read_attempts = max(1, max_read_attempts)
        self.backoff_base_s = backoff_base_s
        self._sleep = sleep
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._budgets = budgets or budgets_for(self.user_id)
        self._contract_url = contract_url or contract_master_url(self.root)
        self._contracts = contract_cache or shared_cache(self._contract_url)
        self._sent: dict[str, Order] = {}
        simulated = any(is_simulator_credential(v) for v in (api_key, access_token) if v)
        self._refusal: BrokerError | None = None
        if simulated and not is_loopback_url(self.root):
            self._refusal = BrokerError(
                "these Alice Blue credentials were issued by the Alice Blue simulator; refusing to send "
                "them off this machine. Point ALICE_API_ROOT at the simulator (http://127.0.0.1:8003/)",
                code="simulator_credentials",
            )
        http = requests.Session()
        http.trust_env = False  # never a proxy from the environment: the account's own, or none
        if proxy_url and not simulated:
            http.proxies = {"http": proxy_url, "https": proxy_url}
        self._secrets: tuple[str, ...] = tuple(s for s in (access_token, proxy_url, api_key) if s)
        self._hub = Hub(user_id=self.user_id, base_url=self.root, timeout=self.timeout, session=http)
        self._session: AliceSession | None = None
        if access_token:
            self._adopt(AliceSession(self.user_id, access_token, jwt_expiry(access_token)))

    @classmethod
    def for_credentials(cls, creds: BrokerCredentials) -> AliceBroker:
        return cls(
            user_id=creds.user_id,
            api_key=creds.api_key,
            access_token=creds.access_token,
            proxy_url=creds.proxy_url,
        )

    def __repr__(self) -> str:
        return f"AliceBroker(user_id={self.user_id!r}, root={self.root!r})"

    # --- session -------------------------------------------------------------------------------

    @property
    def session(self) -> AliceSession | None:
        return self._session

    def _adopt(self, session: AliceSession) -> None:
        self._session = session
        self._hub.session_id = session.user_session
        self._secrets = (*self._secrets, session.user_session)

    def vendor_login(self, *, auth_code: str, api_secret: str) -> AliceSession:
        """Exchange the auth code Alice Blue's login page handed back for a `userSession`.
        A refusal raises TokenExpired (`login_refused`) and keeps the session held before."""
        if self._refusal is not None:
            raise self._refusal
        secrets = (*self._secrets, auth_code, api_secret)
        with self._lock:
            self._budgets.other.take()
            answer = self._hub.vendor_session(auth_code=auth_code, secret_key=api_secret)
            exchange = self._hub.last
        token = str(answer.get("userSession") or "") if isinstance(answer, dict) else ""
        if token:
            session = AliceSession(self.user_id, token, jwt_expiry(token))
            with self._lock:
                self._adopt(session)
            logger.info("alice vendor login for %s", self.user_id)
            return session
        if exchange is None or exchange.error is not None:
            if exchange is not None and exchange.error is not None:
                raise transport_error(exchange.error, write=False, secrets=secrets)
            raise BrokerUnavailable("Alice Blue login: no answer")
        body = exchange.body
        if exchange.status != 200 or exchange.unreadable:
            error = body_error(body, status=exchange.status, write=False, secrets=secrets)
            if not isinstance(error, TokenExpired) and exchange.status != 200:
                raise error
        message = redact(str((body or {}).get("emsg") or (body or {}).get("message") or "refused"), secrets)
        raise TokenExpired(f"Alice Blue refused the login: {message}", code="login_refused")

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[Hub], Any], *, write: bool, empty_ok: bool = False) -> Any:
        """One SDK call under the lock, inside the budget. Returns the envelope's `result`."""
        if self._refusal is not None:
            raise self._refusal
        with self._lock:
            if self._session is None:
                raise TokenExpired(
                    f"Alice Blue session for {self.user_id} is missing: the client must log in",
                    code="token_expired",
                )
            (self._budgets.writes if write else self._budgets.other).take()
            self._hub.last = None
            try:
                fn(self._hub)
            except MALFORMED as exc:  # the SDK's own validation, before anything is sent
                raise InputRejected(redact(f"{type(exc).__name__}: {exc}", self._secrets)) from None
            exchange = self._hub.last
        if exchange is None:
            raise BrokerUnavailable("the SDK sent nothing")
        if exchange.error is not None:
            raise transport_error(exchange.error, write=write, secrets=self._secrets)
        body = exchange.body
        if exchange.status == 200 and succeeded(body):
            return body.get("result")
        if empty_ok and exchange.status == 200 and error_code(body) in EMPTY_CODES:
            return []
        error = body_error(body, status=exchange.status, write=write, secrets=self._secrets)
        if isinstance(error, TokenExpired):
            logger.info("alice session of %s refused (%s)", self.user_id, error_code(body) or exchange.status)
        raise error

    def _read(
        self, op: str, fn: Callable[[Hub], Any], convert: Callable[[Any], T], *, empty_ok: bool = False
    ) -> T:
        attempt = 1
        while True:
            try:
                result = self._call(fn, write=False, empty_ok=empty_ok)
                try:
                    return convert(result)
                except MALFORMED as exc:
                    raise BrokerUnavailable(
                        redact(f"malformed {op} answer ({type(exc).__name__}: {exc})", self._secrets)
                    ) from None
            except (RateLimited, BrokerUnavailable) as error:
                if attempt >= self.max_read_attempts or getattr(error, "code", "") == "budget_spent":
                    logger.warning(
                        "alice %s for %s failed after %d attempts: %s", op, self.user_id, attempt, error.code
                    )
                    raise
                delay = self.backoff_base_s * 2 ** (attempt - 1)
                self._sleep(delay / 2 + self._rng.uniform(0, delay / 2))
                attempt += 1

    def _write(self, op: str, fn: Callable[[Hub], Any]) -> str:
        try:
            result = self._call(fn, write=True)
            try:
                return parse.order_id_of(result)
            except MALFORMED as exc:
                raise BrokerError(
                    f"{op}: answer without an order id ({type(exc).__name__})", code="outcome_unknown"
                ) from None
        except BrokerError as error:
            logger.warning("alice %s for %s failed: %s", op, self.user_id, error.code)
            raise

    # --- instruments ---------------------------------------------------------------------------

    def contract_master(self) -> ContractMaster:
        return self._contracts.get(
            lambda: download_contract_master(
                self._contract_url, timeout=max(self.timeout, CONTRACT_MASTER_TIMEOUT_S)
            )
        )

    def instruments(self) -> list[Instrument]:
        return self.contract_master().instruments()

    def instrument(self, key: InstrumentKey) -> Instrument | None:
        contract = self.contract_master().by_key(key)
        return contract.instrument if contract else None

    def _contract(self, exchange: str, tradingsymbol: str) -> Contract:
        key = InstrumentKey(exchange.upper(), tradingsymbol.upper())
        contract = self.contract_master().by_key(key)
        if contract is None:
            raise InputRejected(f"Alice Blue does not list {key}", code="instrument_not_listed")
        return contract

    # --- reads ---------------------------------------------------------------------------------

    def funds(self) -> Funds:
        return self._read("limits", lambda h: h.get_funds(), parse.parse_funds)

    def orders(self) -> list[Order]:
        master = self.contract_master()
        return self._read(
            "order book", lambda h: h.get_orderbook(), lambda r: parse.parse_orders(r, master), empty_ok=True
        )

    def positions(self) -> list[Position]:
        master = self.contract_master()
        return self._read(
            "positions",
            lambda h: h.get_positions(),
            lambda r: parse.parse_positions(r, master),
            empty_ok=True,
        )

    def order_margins(self, reqs: Sequence[OrderRequest]) -> list[MarginEstimate]:
        """Each order alone: `/orders/checkMargin`."""
        out = []
        for req in reqs:
            contract = self._contract(req.exchange, req.tradingsymbol)
            order_type, product, _ = self._words(req)
            price = "" if req.order_type in PROTECTED else str(req.price or "")
            trigger = str(req.trigger_price or "") if req.order_type in (OrderType.SL, OrderType.SLM) else ""

            def call(
                h: Hub,
                c: Contract = contract,
                ot: str = order_type,
                p: str = product,
                r: OrderRequest = req,
                pr: str = price,
                t: str = trigger,
            ) -> Any:
                return h.singleOrderMargin(
                    transactionType=r.side.value,
                    quantity=r.quantity,
                    orderComplexity=vocab.COMPLEXITY_REGULAR,
                    product=p,
                    orderType=ot,
                    price=pr,
                    slTriggerPrice=t,
                    slLegPrice="",
                    instrumentId=c.token,
                    exchange=c.exchange,
                )

            out.append(self._read("order margin", call, parse.parse_margin))
        return out

    def basket_margin(self, reqs: Sequence[OrderRequest]) -> MarginEstimate:
        """`/orders/basket/margin` with every leg (the SDK's own call sends one leg, and
        `TriggerPrice` where the docs say `triggerPrice`): hedges inside the basket count."""
        if not reqs:
            return MarginEstimate(total=Decimal("0"))
        legs = []
        for req in reqs:
            contract = self._contract(req.exchange, req.tradingsymbol)
            legs.append(
                {
                    "exchange": contract.exchange,
                    "tradingSymbol": contract.alice_symbol,
                    "price": str(req.price or 0),
                    "qty": str(req.quantity),
                    "product": vocab.BASKET_PRODUCT[req.product],
                    "priceType": vocab.BASKET_PRICE_TYPE[req.order_type],
                    "triggerPrice": str(req.trigger_price or ""),
                    "transType": req.side.value[0],
                }
            )
        return self._read("basket margin", lambda h: h.post("getBasketMargin", legs), parse.parse_margin)

    def ltp(self, keys: Sequence[InstrumentKey]) -> dict[InstrumentKey, Decimal]:
        """Alice Blue's current REST API has no last-price route (prices come through the option
        chain and the market-data socket): nothing here; the engine falls back to its own prices."""
        return {}

    # --- writes --------------------------------------------------------------------------------

    def _check_tag(self, tag: str) -> None:
        if tag and (len(tag) > TAG_MAX or not TAG_CHARS.fullmatch(tag)):
            raise InputRejected(
                f"order tag {tag!r}: Alice Blue takes at most {TAG_MAX} letters and digits",
                code="tag_invalid",
            )

    @staticmethod
    def _words(req: OrderRequest) -> tuple[str, str, str]:
        try:
            return (
                vocab.ORDER_TYPE_TO_ALICE[req.order_type],
                vocab.PRODUCT_TO_ALICE[req.product],
                vocab.VALIDITY_TO_ALICE[req.validity],
            )
        except KeyError as exc:
            raise InputRejected(f"Alice Blue has no {exc.args[0]}", code="input_rejected") from None

    def place_order(self, req: OrderRequest) -> str:
        """Send one order (a one-element array, as Alice Blue wants), never retried. `orderTag`
        carries the engine's tag (looked up in the book after an unknown outcome); MARKET and SL-M
        orders carry `marketProtectionPercent`; `algoId` when one is configured."""
        self._check_tag(req.tag)
        contract = self._contract(req.exchange, req.tradingsymbol)
        order_type, product, validity = self._words(req)
        protection = req.market_protection if req.market_protection is not None else self.market_protection
        params: dict[str, Any] = {
            "instrumentId": contract.token,
            "exchange": contract.exchange,
            "transactionType": req.side.value,
            "quantity": req.quantity,
            "orderComplexity": vocab.COMPLEXITY_REGULAR,
            "product": product,
            "orderType": order_type,
            "price": str(req.price)
            if req.price and req.order_type in (OrderType.LIMIT, OrderType.SL)
            else "",
            "slTriggerPrice": str(req.trigger_price or "")
            if req.order_type in (OrderType.SL, OrderType.SLM)
            else "",
            "slLegPrice": "",
            "targetLegPrice": "",
            "validity": validity,
            "marketProtectionPercent": str(protection)
            if req.order_type in PROTECTED and protection > 0
            else "",
            "algoId": self.algo_id[:ALGO_ID_MAX] or None,
            "orderTag": req.tag or None,
        }
        order_id = self._write("place_order", lambda h: h.placeOrder(**params))
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
        raise InputRejected(f"order {order_id} is not in the Alice Blue order book", code="order_not_found")

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
        """`/orders/modify`: the order's price, quantity, type and trigger (market protection cannot
        be modified, EC834)."""
        current = self._sent.get(order_id) or self._book_order(order_id)
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
            "brokerOrderId": order_id,
            "price": str(new_price) if new_type in (OrderType.LIMIT, OrderType.SL) else "",
            "slTriggerPrice": str(new_trigger) if new_type in (OrderType.SL, OrderType.SLM) else "",
            "slLegPrice": "",
            "targetLegPrice": "",
            "quantity": new_quantity,
            "orderType": vocab.ORDER_TYPE_TO_ALICE[new_type],
            "validity": vocab.VALIDITY_TO_ALICE.get(current.validity, "DAY"),
        }
        answer = self._write("modify_order", lambda h: h.modifyOrder(**params))
        self._sent[order_id] = replace(
            current, order_type=new_type, price=new_price, trigger_price=new_trigger, quantity=new_quantity
        )
        return answer

    def cancel_order(self, order_id: str, *, variety: str = "regular") -> str:
        return self._write("cancel_order", lambda h: h.cancelOrder(order_id))
