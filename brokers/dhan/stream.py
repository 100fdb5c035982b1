"""Dhan's live order-update WebSocket (`wss://api-order-update.dhan.co`, docs: Live Order Update).

Every order of the client, from any platform (web, mobile, API), is pushed as an `order_alert`
message after a `LoginReq` (MsgCode 42, client id, access token, UserType SELF). That makes it the
channel to watch a Dhan master; updates are hints, the engine still polls.

The SDK's `OrderUpdate` is not used: it `print()`s the login message, access token included, to
standard output, and its URL is fixed. This client speaks the same documented protocol on the
`websockets` library the SDK itself depends on, in one daemon thread per stream, reconnecting with
backoff until `stop()` or `max_tries` failures in a row (then `gave_up` is set). The interface
(`start`, `stop`, `connected`, `gave_up`, `updates`) is that of brokers.kite.stream's stream, so a
supervisor can hold either. `on_order` runs in the stream's thread: keep it short (wake something).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from brokers.dhan.errors import redact
from brokers.errors import BrokerError
from brokers.simcreds import is_loopback_url, is_simulator_credential
from brokers.types import Order, OrderStatus, OrderType, Product, Side, Validity

logger = logging.getLogger(__name__)

DEFAULT_WS_ROOT = "wss://api-order-update.dhan.co"
STATUS = {
    "TRANSIT": OrderStatus.PENDING,
    "PENDING": OrderStatus.OPEN,
    "PART_TRADED": OrderStatus.OPEN,
    "TRADED": OrderStatus.COMPLETE,
    "CANCELLED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.CANCELLED,
}
ORDER_TYPES = {"MKT": OrderType.MARKET, "LMT": OrderType.LIMIT, "SL": OrderType.SL, "SLM": OrderType.SLM}
PRODUCTS = {"I": Product.MIS, "M": Product.NRML, "C": Product.CNC, "F": Product.MTF}
EXCHANGES = {
    ("NSE", "E"): "NSE",
    ("NSE", "D"): "NFO",
    ("BSE", "E"): "BSE",
    ("BSE", "D"): "BFO",
    ("MCX", "M"): "MCX",
}


class InvalidUpdate(ValueError):
    pass


def parse_order_alert(message: Mapping[str, Any]) -> Order:
    """An `order_alert` message as an Order. The symbol is Dhan's own (`Symbol`): the update is a
    hint to poll, the order book names the instrument properly."""
    if message.get("Type") != "order_alert":
        raise InvalidUpdate(f"not an order alert: {str(message.get('Type'))[:30]!r}")
    data = message.get("Data")
    if not isinstance(data, Mapping):
        raise InvalidUpdate("order alert without Data")
    try:
        quantity = int(data.get("Quantity") or 0)
        traded = int(data.get("TradedQty") or 0)
        return Order(
            order_id=str(data["OrderNo"]),
            exchange=EXCHANGES.get(
                (str(data.get("Exchange")), str(data.get("Segment"))), str(data.get("Exchange"))
            ),
            tradingsymbol=str(data.get("Symbol") or data.get("SecurityId") or ""),
            side=Side.BUY if str(data.get("TxnType")) == "B" else Side.SELL,
            order_type=ORDER_TYPES.get(str(data.get("OrderType")), OrderType.LIMIT),
            product=PRODUCTS.get(str(data.get("Product")), Product.NRML),
            quantity=quantity,
            status=STATUS.get(str(data.get("Status") or "").upper().replace(" ", "_"), OrderStatus.PENDING),
            filled_quantity=traded,
            pending_quantity=int(data.get("RemainingQuantity") or 0),
            validity=Validity.IOC if str(data.get("Validity")) == "IOC" else Validity.DAY,
            tag=str(data.get("CorrelationId") or ""),
            status_message=str(data.get("ReasonDescription") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidUpdate(f"unreadable order alert ({type(exc).__name__})") from None


class DhanOrderStream:
    """One order-update connection for one Dhan client, delivering orders to `on_order`."""

    def __init__(
        self,
        *,
        client_id: str,
        access_token: str,
        on_order: Callable[[Order], None],
        root: str | None = None,
        max_tries: int = 50,
        backoff_s: float = 0.5,
        open_timeout_s: float = 10.0,
    ) -> None:
        self.root = root or DEFAULT_WS_ROOT
        self.client_id = client_id.strip()
        self._access_token = access_token
        self._on_order = on_order
        self._max_tries = max_tries
        self._backoff_s = backoff_s
        self._open_timeout_s = open_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: Any = None
        self.connected = threading.Event()
        self.gave_up = threading.Event()
        self.updates = 0

    def __repr__(self) -> str:
        return f"DhanOrderStream(client_id={self.client_id!r}, root={self.root!r})"

    def start(self) -> None:
        """Connect in a daemon thread (non-blocking). Raises BrokerError `simulator_credentials`
        when the token was issued by the Dhan simulator and the root is not on this machine."""
        if self._thread is not None:
            raise RuntimeError("this stream was already started; create a new one")
        if is_simulator_credential(self._access_token) and not is_loopback_url(self.root):
            raise BrokerError(
                "this Dhan token was issued by the Dhan simulator; refusing to send it off this machine",
                code="simulator_credentials",
            )
        self._thread = threading.Thread(target=self._run, name=f"dhan-orders-{self.client_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:  # closing a dead socket may fail any way; we are done with it
                logger.debug("order stream close failed", exc_info=True)
        self.connected.clear()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _login_message(self) -> str:
        return json.dumps(
            {
                "LoginReq": {"MsgCode": 42, "ClientId": self.client_id, "Token": self._access_token},
                "UserType": "SELF",
            }
        )

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with connect(self.root, open_timeout=self._open_timeout_s, proxy=None) as ws:
                    self._ws = ws
                    ws.send(self._login_message())
                    self.connected.set()
                    self.gave_up.clear()
                    logger.info("dhan order stream for %s connected", self.client_id)
                    for raw in ws:
                        failures = 0
                        self._handle(raw)
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                text = redact(f"{type(exc).__name__}: {exc}", (self._access_token,))
                logger.warning("dhan order stream for %s closed: %s", self.client_id, text)
            finally:
                self._ws = None
                self.connected.clear()
            if self._stop.is_set():
                return
            failures += 1
            if failures >= self._max_tries:
                self.gave_up.set()
                logger.error("dhan order stream for %s gave up reconnecting", self.client_id)
                return
            self._stop.wait(min(30.0, self._backoff_s * 2 ** min(failures - 1, 6)))

    def _handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
            order = parse_order_alert(message)
        except (ValueError, InvalidUpdate) as exc:
            logger.warning("dhan order update dropped: %s", exc)
            return
        self.updates += 1
        logger.info("dhan order update %s %s", order.order_id, order.status.value)
        self._on_order(order)
