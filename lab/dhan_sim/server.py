"""`DhanSim` (clients, faults, limits and dispatch), the threaded HTTP server that carries it, and
the order-update WebSocket (ws:// on a second loopback port).

    running = start()                             # 127.0.0.1, ephemeral ports, daemon threads
    client = running.sim.store.register(client_id="C1")
    DhanBroker(client_id="C1", pin=client.pin, totp_secret=client.totp_secret,
               api_key=client.api_key, root=running.root)
    running.sim.set_faults(client_id="C1", timeout_after_place={"sleep_s": 2.0})
    running.stop()

Each request runs in its own thread with its own database connection, closed when the request
ends; tests must commit what the server is to see (`django_db(transaction=True)`). The socket
pushes an `order_alert` whenever an order of a logged-in client changes on the paper exchange,
whoever placed it (Dhan's stream covers every platform); it looks every `watch_s` seconds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connections
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server as WsServer
from websockets.sync.server import ServerConnection, serve

from brokers.errors import BrokerError, InputRejected, OrderRejected
from brokers.paper.models import PaperInstrument
from lab import sim_http
from lab.dhan_sim.auth import ClientStore, DhanAuthError
from lab.dhan_sim.routes import WRITES, Call, DhanError, order_alert, refusal, resolve, segment_of
from lab.kite_sim.faults import Faults, FaultSpecError
from lab.kite_sim.selectors import sim_instrument_list, sim_order_list
from lab.kite_sim.wire import Request, Response
from lab.sim_faults import AcceptedWrites
from lab.sim_http import RunningHttp, ServerFault
from lab.sim_http import WriteLimiter as SimWriteLimiter

logger = logging.getLogger(__name__)

WRITE_WINDOWS = ((1.0, 10), (60.0, 250), (3600.0, 1000), (86400.0, 7000))  # per client id


class Hit(NamedTuple):
    client_id: str
    route: str
    status: int


class WriteLimiter(SimWriteLimiter):
    """Dhan's order-write windows per client id. A refused write does not count."""

    default_windows = WRITE_WINDOWS


def _broker_error(exc: BrokerError) -> Response:
    if isinstance(exc, InputRejected):
        if "not found" in exc.message.lower() or "couldn't find" in exc.message.lower():
            return refusal("DH-907", "No data present", 404)
        return refusal("DH-905", exc.message)
    if isinstance(exc, OrderRejected):
        return refusal("DH-906", exc.message)
    return refusal("DH-908", "Server was not able to process API request", 500)


class DhanSim:
    """The simulator's state and dispatch (no sockets: `handle` takes a `Request`)."""

    def __init__(
        self,
        *,
        store: ClientStore | None = None,
        faults: Faults | None = None,
        limiter: WriteLimiter | None = None,
        unlisted: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store or ClientStore()
        self.faults = faults or Faults()
        self.limiter = limiter or WriteLimiter()
        self.unlisted = unlisted
        self.ws_root = ""
        self._lock = threading.Lock()
        self._accepted = AcceptedWrites(self.faults)
        self._login_refused: set[str] = set()
        self.hits: Counter[Hit] = Counter()

    def handle(self, request: Request) -> Response:
        route_name, client_id = f"{request.method} ?", ""
        try:
            found = resolve(request.method, request.path)
            if found is None:
                response = refusal("DH-905", "Not found", 404)
            else:
                route, args = found
                route_name = f"{route.method} {route.path}"
                token = (
                    self.store.authenticate(request.header("access-token"), request.header("client-id"))
                    if route.auth
                    else None
                )
                client_id = token.client_id if token else ""
                if not route.admin:
                    delay = self.faults.latency_s(client_id or None)
                    if delay > 0:
                        time.sleep(delay)
                response = route.handler(Call(self, request, token, args))
        except DhanAuthError as exc:
            response = refusal(exc.code, exc.message, exc.status)
        except DhanError as exc:
            response = refusal(exc.code, exc.message, exc.status)
        except FaultSpecError as exc:
            response = Response.json_body({"message": str(exc)}, 400)
        except ServerFault as exc:
            response = Response(status=exc.status, body=b"<html>Bad Gateway</html>", content_type="text/html")
        except BrokerError as exc:
            response = _broker_error(exc)
        except Exception:
            logger.exception("dhan_sim: %s %s failed", request.method, request.path)
            response = refusal("DH-908", "Server was not able to process API request", 500)
        with self._lock:
            self.hits[Hit(client_id, route_name, response.status)] += 1
        return response

    def hit_count(
        self, *, client_id: str | None = None, route: str | None = None, status: int | None = None
    ) -> int:
        """Requests answered; `route` is matched as a suffix of "METHOD /path" (`POST /v2/orders`)."""
        with self._lock:
            return sum(
                n
                for hit, n in self.hits.items()
                if (client_id is None or hit.client_id == client_id)
                and (route is None or hit.route.endswith(route))
                and (status is None or hit.status == status)
            )

    def order_write_gate(self, client_id: str) -> None:
        gate = self.faults.on_order_write(client_id)
        if gate.expire_token:
            self.store.expire(client_id=client_id)
            raise DhanAuthError("DH-906", "Invalid Token", status=400)
        if gate.rate_limited or not self.limiter.allow(client_id):
            raise DhanError(
                "DH-904", "Too many requests on server from single user breaching rate limits.", status=429
            )

    def after_accept(self, client_id: str, *, order_id: str, placed: bool) -> None:
        self._accepted.after_accept(client_id, order_id=order_id, placed=placed)

    def visible(self, order_id: str) -> bool:
        return self._accepted.visible(order_id)

    def login_refused(self, client_id: str) -> bool:
        with self._lock:
            return client_id.strip() in self._login_refused

    def set_faults(self, *, client_id: str | None = None, **spec: Any) -> dict[str, Any]:
        """lab.kite_sim's fault spec, plus `login_refused: true|false` (per client id)."""
        refused = spec.pop("login_refused", None)
        if refused is not None and client_id:
            with self._lock:
                (self._login_refused.add if refused else self._login_refused.discard)(client_id.strip())
        state = self.faults.set(user_id=client_id, **spec) if spec else {}
        if spec.get("expire_token") == "now":
            self.store.expire(client_id=client_id)
        return state

    def clear_faults(self) -> None:
        self.faults.clear()
        with self._lock:
            self._login_refused.clear()

    def configure(self, config: dict[str, Any]) -> None:
        """Load `{"clients": [{client_id, pin?, totp_secret?, api_key?}], "faults": [{client_id?, ...}]}`."""
        unknown = set(config) - {"clients", "faults"}
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        for entry in config.get("clients", []):
            self.store.register(
                client_id=str(entry["client_id"]),
                pin=str(entry.get("pin", "")),
                totp_secret=str(entry.get("totp_secret", "")),
                api_key=str(entry.get("api_key", "")),
            )
        for spec in config.get("faults", []):
            spec = dict(spec)
            client_id = spec.pop("client_id", None)
            self.set_faults(client_id=client_id, **spec)

    def instruments_by_security(self) -> dict[tuple[str, str], PaperInstrument]:
        return {(segment_of(row), str(row.instrument_token)): row for row in sim_instrument_list()}


# --- the order-update socket ----------------------------------------------------------------------


@dataclass
class OrderFeed:
    """Logged-in sockets per client id, and what each client's orders looked like last time."""

    sim: DhanSim
    watch_s: float = 0.1
    sockets: dict[str, list[ServerConnection]] = field(default_factory=dict)
    seen: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self, ws: ServerConnection) -> None:
        """One connection: the `LoginReq` first (MsgCode 42, ClientId, Token), then updates pushed."""
        try:
            first = json.loads(ws.recv(timeout=10))
            login = first.get("LoginReq") or {}
            client_id = str(login.get("ClientId") or "")
            if int(login.get("MsgCode") or 0) != 42 or first.get("UserType") != "SELF":
                raise DhanAuthError("DH-905", "bad login message")
            self.sim.store.authenticate(str(login.get("Token") or ""), client_id)
        except (DhanAuthError, ValueError, TypeError, AttributeError, TimeoutError, ConnectionClosed):
            ws.close(code=4001, reason="authentication failed")
            return
        with self.lock:
            self.sockets.setdefault(client_id, []).append(ws)
            self.seen.setdefault(client_id, {})
        try:
            ws.wait_closed() if hasattr(ws, "wait_closed") else self._drain(ws)
        finally:
            with self.lock:
                if ws in self.sockets.get(client_id, []):
                    self.sockets[client_id].remove(ws)

    def _drain(self, ws: ServerConnection) -> None:
        try:
            for _ in ws:
                pass
        except ConnectionClosed:
            return

    def watch(self) -> None:
        """Push every change of a watched client's orders (polls the paper book)."""
        while not self.stop.wait(self.watch_s):
            with self.lock:
                clients = [c for c, s in self.sockets.items() if s]
            try:
                for client_id in clients:
                    self._push(client_id)
            except Exception:
                logger.exception("dhan_sim: order feed failed")
            finally:
                connections.close_all()

    def _push(self, client_id: str) -> None:
        rows = sim_order_list(user_id=client_id)
        with self.lock:
            seen = self.seen.setdefault(client_id, {})
            targets = list(self.sockets.get(client_id, []))
        messages = []
        for row in rows:
            state = (row.status, row.filled_quantity, row.quantity, row.price, row.updated_at)
            if seen.get(row.order_id) != state:
                seen[row.order_id] = state
                messages.append(json.dumps(order_alert(row)))
        for ws in targets:
            for message in messages:
                try:
                    ws.send(message)
                except ConnectionClosed:
                    break


# --- the HTTP server (lab.sim_http) ----------------------------------------------------------


@dataclass
class RunningSim(RunningHttp[DhanSim]):
    """The Dhan simulator served on 127.0.0.1, with its order-update socket and the feed's watcher."""

    ws_server: WsServer
    ws_thread: threading.Thread
    feed: OrderFeed
    feed_thread: threading.Thread

    @property
    def ws_root(self) -> str:
        return self.sim.ws_root

    def stop(self) -> None:
        self.feed.stop.set()
        self.ws_server.shutdown()
        super().stop()
        self.ws_thread.join(timeout=5)
        self.feed_thread.join(timeout=5)


def start(
    *, sim: DhanSim | None = None, host: str = "127.0.0.1", port: int = 0, ws_port: int = 0
) -> RunningSim:
    """Serve `sim` (a new one by default) on host:port and its socket on host:ws_port (0 = free)."""
    sim = sim or DhanSim()
    server = sim_http.make_server(sim, host=host, port=port)
    feed = OrderFeed(sim)
    ws_server = serve(feed.serve, host, ws_port)
    ws_host, ws_bound = ws_server.socket.getsockname()[:2]
    sim.ws_root = f"ws://{ws_host}:{ws_bound}"
    ws_thread = threading.Thread(target=ws_server.serve_forever, name="dhan-sim-ws", daemon=True)
    feed_thread = threading.Thread(target=feed.watch, name="dhan-sim-feed", daemon=True)
    for t in (ws_thread, feed_thread):
        t.start()
    thread = sim_http.serve(server, name="dhan-sim")
    return RunningSim(sim, server, thread, ws_server, ws_thread, feed, feed_thread)


__all__ = ["WRITES", "DhanSim", "RunningSim", "WriteLimiter", "start"]
