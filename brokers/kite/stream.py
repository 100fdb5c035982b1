"""Kite WebSocket order updates (kite/API.md §12) on the SDK's KiteTicker.

The ticker pushes every order update of the access token's user, from any platform (web, mobile,
API), which makes it the channel to watch the master. Updates are hints: the engine still polls.

KiteTicker runs on Twisted, whose reactor cannot be restarted in a process. The reactor therefore
runs once, in a daemon thread started on first use, and every stream (a new one each morning,
after the new login) is connected and closed through it. Run this in its own process (the
`master_stream` command), never inside a web worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kiteconnect import KiteTicker
from twisted.internet import reactor as _installed_reactor

from brokers.kite.errors import redact, simulator_refusal
from brokers.kite.parse import Unsupported
from brokers.kite.postback import InvalidPostback, parse_order_update, postback_user_id
from brokers.types import Order

logger = logging.getLogger(__name__)

DEFAULT_WS_ROOT = "wss://ws.kite.trade"

# Twisted's annotations describe `twisted.internet.reactor` as a plain module; at run time it is
# the installed reactor (IReactorCore, IReactorThreads), used here only through run/stop/callFromThread.
reactor: Any = _installed_reactor

_reactor_lock = threading.Lock()
_reactor_thread: threading.Thread | None = None


def _ensure_reactor() -> None:
    """Start the Twisted reactor in a daemon thread, once per process."""
    global _reactor_thread
    with _reactor_lock:
        if _reactor_thread is None:
            _reactor_thread = threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},  # signals belong to the main thread
                name="kite-ticker-reactor",
                daemon=True,
            )
            _reactor_thread.start()


def stop_reactor() -> None:
    """Stop the reactor at process exit (it cannot be started again in this process)."""
    if _reactor_thread is not None and reactor.running:
        reactor.callFromThread(reactor.stop)


class OrderUpdateStream:
    """One KiteTicker connection delivering order updates of one user to `on_order`.

    `on_order` runs in the reactor thread: keep it short (wake something, do not call brokers).
    Updates of another user than `user_id` (when given) and payloads that do not parse are
    logged and dropped.
    """

    def __init__(
        self,
        *,
        api_key: str,
        access_token: str,
        on_order: Callable[[Order], None],
        root: str | None = None,
        user_id: str = "",
        reconnect_max_tries: int = 50,
    ) -> None:
        self.root = root or DEFAULT_WS_ROOT
        self.user_id = user_id.strip().upper()
        self._api_key = api_key
        self._access_token = access_token
        self._on_order = on_order
        self._reconnect_max_tries = reconnect_max_tries
        self._ticker: KiteTicker | None = None
        self.connected = threading.Event()
        self.gave_up = threading.Event()
        self.updates = 0

    def __repr__(self) -> str:  # never show the token
        return f"OrderUpdateStream(user_id={self.user_id!r}, root={self.root!r})"

    # --- callbacks (KiteTicker signatures; run in the reactor thread) --------------------------

    def handle_order_update(self, ws: Any, data: Mapping[str, Any]) -> None:
        """KiteTicker's `on_order_update(ws, data)`: parse the update and hand it to `on_order`."""
        try:
            user_id = postback_user_id(data)
            order = parse_order_update(data)
        except (InvalidPostback, Unsupported) as exc:
            logger.warning("order update dropped: %s", exc)
            return
        if self.user_id and user_id != self.user_id:
            logger.warning("order update for %s dropped: this stream watches %s", user_id, self.user_id)
            return
        self.updates += 1
        logger.info("order update %s %s (%s)", order.order_id, order.status.value, order.tradingsymbol)
        self._on_order(order)

    def handle_connect(self, ws: Any, response: Any) -> None:
        self.connected.set()
        self.gave_up.clear()
        logger.info("order stream for %s connected", self.user_id or "?")

    def handle_close(self, ws: Any, code: Any, reason: Any) -> None:
        self.connected.clear()
        logger.warning("order stream for %s closed: %s %s", self.user_id or "?", code, self._clean(reason))

    def handle_error(self, ws: Any, code: Any, reason: Any) -> None:
        logger.warning("order stream for %s error: %s %s", self.user_id or "?", code, self._clean(reason))

    def handle_noreconnect(self, ws: Any) -> None:
        self.connected.clear()
        self.gave_up.set()
        logger.error("order stream for %s gave up reconnecting", self.user_id or "?")

    def _clean(self, text: Any) -> str:
        return redact(str(text), (self._access_token, self._api_key))

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (non-blocking); the SDK reconnects with backoff until `reconnect_max_tries`.

        Raises BrokerError (code `simulator_credentials`) before connecting when the credentials
        were issued by the Kite simulator and the root is not on this machine."""
        if self._ticker is not None:
            raise RuntimeError("this stream was already started; create a new one")
        refusal = simulator_refusal(root=self.root, credentials=(self._api_key, self._access_token))
        if refusal is not None:
            raise refusal
        ticker = KiteTicker(
            self._api_key,
            self._access_token,
            root=self.root,
            reconnect=True,
            reconnect_max_tries=self._reconnect_max_tries,
        )
        ticker.on_order_update = self.handle_order_update
        ticker.on_connect = self.handle_connect
        ticker.on_close = self.handle_close
        ticker.on_error = self.handle_error
        ticker.on_noreconnect = self.handle_noreconnect
        self._ticker = ticker
        _ensure_reactor()
        # Inside the reactor thread the reactor is running, so connect() only opens the socket.
        reactor.callFromThread(ticker.connect)

    def stop(self) -> None:
        """Close the connection and stop reconnecting (the reactor keeps running for the next one)."""
        ticker = self._ticker
        if ticker is not None and reactor.running:
            reactor.callFromThread(ticker.close)
        self.connected.clear()
