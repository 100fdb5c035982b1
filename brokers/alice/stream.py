"""Alice Blue's order feed (docs/alice.md §Order feed): a WebSocket that wakes the engine.

`GET /open-api/order-notify/ws/createWsToken` (through the SDK, with the account's session) gives
an `orderToken`; the socket (`wss://ant.aliceblueonline.com/order-notify/websocket`; the
simulator's on loopback) takes `{"orderToken", "userId"}` first, then a heartbeat
`{"heartbeat": "h", "userId"}` every 50 s (Alice Blue drops a connection silent for a minute).
Each order message (`t: "om"`, the webhook's Noren fields) is handed to `on_order` as an Order:
a hint, like Kite's `master_stream`; polling stays the truth. The SDK's own feed
(`get_OrderFeed_websocket`) prints every message and never returns, so the socket is
websocket-client's, run in a daemon thread here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import websocket  # websocket-client (a dependency of the SDK)

from brokers.alice import vocab
from brokers.alice.client import AliceBroker
from brokers.alice.errors import redact
from brokers.alice.parse import decimal, integer
from brokers.errors import BrokerError
from brokers.simcreds import is_loopback_url, is_simulator_credential
from brokers.types import Order, Product, Side

logger = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://ant.aliceblueonline.com/order-notify/websocket"
HEARTBEAT_S = 50.0


def parse_order_message(data: Mapping[str, Any]) -> Order:
    """One `t: "om"` message as an Order (Alice Blue's own symbol: only a hint)."""
    side = {"B": Side.BUY, "S": Side.SELL}[str(data.get("trantype") or "")[:1].upper()]
    quantity = integer(data.get("qty"))
    filled = integer(data.get("fillshares"))
    status = vocab.status_from_alice(str(data.get("status") or ""))
    return Order(
        order_id=str(data["norenordno"]),
        exchange=str(data.get("exch") or "").upper(),
        tradingsymbol=str(data.get("tsym") or "").upper(),
        side=side,
        order_type=vocab.ORDER_TYPE_FROM_ALICE[str(data.get("prctyp") or "").upper()],
        product=vocab.PRODUCT_FROM_ALICE.get(str(data.get("prd") or "").upper(), Product.NRML),
        quantity=quantity,
        status=status,
        price=decimal(data.get("prc")),
        trigger_price=decimal(data.get("trgprc")),
        filled_quantity=filled,
        average_price=decimal(data.get("avgprc")) or Decimal("0"),
        pending_quantity=0 if status.is_final else max(0, quantity - filled),
        status_message=str(data.get("rejreason") or ""),
    )


class OrderUpdateStream:
    """One order-feed connection for one Alice Blue user, delivering updates to `on_order`.

    `on_order` runs in the socket's thread: keep it short (wake something, do not call brokers).
    """

    def __init__(
        self,
        *,
        broker: AliceBroker,
        on_order: Callable[[Order], None],
        ws_url: str = DEFAULT_WS_URL,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.broker = broker
        self.ws_url = ws_url
        self.heartbeat_s = heartbeat_s
        self._on_order = on_order
        self._app: websocket.WebSocketApp | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.gave_up = threading.Event()
        self.updates = 0

    def __repr__(self) -> str:
        return f"OrderUpdateStream(user_id={self.broker.user_id!r}, ws_url={self.ws_url!r})"

    def _token(self) -> str:
        result = self.broker._read("ws token", lambda h: h.get("getWSSession"), lambda r: r)
        token = str((result or [{}])[0].get("orderToken") or "")
        if not token:
            raise BrokerError(
                "Alice Blue gave no order feed token (is the feed enabled?)", code="feed_disabled"
            )
        return token

    def start(self) -> None:
        """Fetch the feed token and connect (non-blocking). Raises BrokerError before connecting
        when the account's credentials were issued by the simulator and the socket is not local."""
        if self._app is not None:
            raise RuntimeError("this stream was already started; create a new one")
        if self.broker._refusal is not None:
            raise self.broker._refusal
        session = self.broker.session
        simulated = session is not None and is_simulator_credential(session.user_session)
        if simulated and not is_loopback_url(self.ws_url.replace("ws", "http", 1)):
            raise BrokerError(
                "this Alice Blue session was issued by the simulator: its order feed is on this machine only",
                code="simulator_credentials",
            )
        hello = json.dumps({"orderToken": self._token(), "userId": self.broker.user_id})
        self._app = websocket.WebSocketApp(
            self.ws_url,
            on_open=lambda ws: self._opened(ws, hello),
            on_message=self._message,
            on_close=self._closed,
            on_error=self._error,
        )
        self._thread = threading.Thread(target=self._app.run_forever, name="alice-order-feed", daemon=True)
        self._thread.start()

    def _opened(self, ws: Any, hello: str) -> None:
        ws.send(hello)
        threading.Thread(target=self._beat, args=(ws,), name="alice-feed-heartbeat", daemon=True).start()

    def _beat(self, ws: Any) -> None:
        beat = json.dumps({"heartbeat": "h", "userId": self.broker.user_id})
        while not self._stop.wait(self.heartbeat_s):
            try:
                ws.send(beat)
            except websocket.WebSocketException:
                return

    def _message(self, ws: Any, message: str) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            logger.warning("alice order feed: unreadable message dropped")
            return
        if not isinstance(data, dict):
            return
        if data.get("t") == "ck":
            if data.get("k") == "OK":
                self.connected.set()
                logger.info("alice order feed for %s connected", self.broker.user_id)
            else:
                self.gave_up.set()
                logger.error("alice order feed for %s refused the token", self.broker.user_id)
            return
        if data.get("t") != "om":
            return
        try:
            order = parse_order_message(data)
        except (KeyError, ValueError, TypeError) as exc:
            logger.warning("alice order update dropped: %s", type(exc).__name__)
            return
        self.updates += 1
        self._on_order(order)

    def _closed(self, ws: Any, code: Any, reason: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            self.gave_up.set()
        logger.warning("alice order feed for %s closed: %s", self.broker.user_id, code)

    def _error(self, ws: Any, error: Any) -> None:
        logger.warning("alice order feed error: %s", redact(str(error), self.broker._secrets))

    def stop(self) -> None:
        self._stop.set()
        if self._app is not None:
            self._app.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.connected.clear()
