"""The Alice Blue simulator's order feed: a WebSocket on loopback (Alice Blue's is
`wss://ant.aliceblueonline.com/order-notify/websocket`).

The client first asks `GET /open-api/order-notify/ws/createWsToken` for an `orderToken`, connects,
and sends `{"orderToken": ..., "userId": ...}`; then a heartbeat `{"heartbeat": "h", "userId": ...}`
at least once a minute. The feed answers the first message with `{"t": "ck", "k": "OK"}` (or
`"failed"` and closes), and then pushes one `{"t": "om", ...}` message (the webhook's Noren fields)
each time an order of that user changes in the paper exchange (placed, filled, modified, cancelled,
from any source), found by polling the paper book every `poll_s`.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import close_old_connections, connections
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from brokers.errors import BrokerError
from lab.alice_sim import payloads
from lab.kite_sim.selectors import sim_order_list
from lab.kite_sim.server import check_loopback

logger = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT_S = 60.0
PATH = "/order-notify/websocket"


class OrderFeed:
    def __init__(self, *, poll_s: float = 0.1) -> None:
        self.poll_s = poll_s
        self._tokens: dict[str, str] = {}  # orderToken -> user id
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.heartbeats = 0
        self.sent = 0

    def issue(self, user_id: str) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._tokens[token] = user_id
        return token

    @property
    def url(self) -> str:
        if self._server is None:
            return ""
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}{PATH}"

    def start(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        check_loopback(host)
        self._server = serve(self._serve, host, port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="alice-sim-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _snapshot(self, user_id: str) -> dict[str, tuple[Any, ...]]:
        close_old_connections()
        try:
            rows = sim_order_list(user_id=user_id)
        except (BrokerError, ObjectDoesNotExist):  # no paper account yet
            return {}
        return {
            r.order_id: (r.status, r.filled_quantity, r.quantity, r.price, r.trigger_price, r) for r in rows
        }

    def _serve(self, ws: ServerConnection) -> None:
        try:
            first = json.loads(ws.recv(timeout=10))
            with self._lock:
                user_id = self._tokens.get(str(first.get("orderToken") or ""))
            if user_id is None or str(first.get("userId") or "").upper() != user_id:
                ws.send(json.dumps({"t": "ck", "k": "failed"}))
                return
            ws.send(json.dumps({"t": "ck", "k": "OK"}))
            seen = {k: v[:5] for k, v in self._snapshot(user_id).items()}
            last_beat = time.monotonic()
            while True:
                try:
                    message = ws.recv(timeout=self.poll_s)
                    if json.loads(message).get("heartbeat") == "h":
                        self.heartbeats += 1
                        last_beat = time.monotonic()
                except TimeoutError:
                    pass
                if time.monotonic() - last_beat > HEARTBEAT_TIMEOUT_S:
                    return  # no heartbeat for a minute: Alice Blue drops the connection
                for order_id, state in self._snapshot(user_id).items():
                    if seen.get(order_id) != state[:5]:
                        seen[order_id] = state[:5]
                        ws.send(json.dumps(payloads.order_update(state[5], user_id=user_id)))
                        self.sent += 1
        except (ConnectionClosed, ValueError, AttributeError):
            return
        finally:
            connections.close_all()
