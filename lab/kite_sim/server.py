"""`KiteSim` (sessions, faults, limits and dispatch) and the threaded HTTP server that carries it.

    running = start(port=0)            # 127.0.0.1, an ephemeral port, a daemon thread
    KiteBroker(api_key=..., access_token=..., root=running.root)
    running.sim.set_faults(user_id="C1", rate_limit={"count": 3})
    running.stop()

Only loopback addresses are served. Each request runs in its own thread with its own database
connection, closed when the request ends; tests must commit what the server is to see
(`django_db(transaction=True)`).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from django.db import connections

from brokers.errors import BrokerError, InputRejected, OrderRejected
from brokers.paper.models import OrderStatus, PaperOrder
from lab.kite_sim import payloads
from lab.kite_sim.auth import AuthError, Session, SessionStore
from lab.kite_sim.faults import Faults, FaultSpecError, OrderRateLimiter
from lab.kite_sim.feed import FeedConnection, OrderFeed, accept_key, serve_connection
from lab.kite_sim.routes import resolve
from lab.kite_sim.wire import Call, KiteError, Request, Response

logger = logging.getLogger(__name__)

ERROR_MESSAGES = {
    500: "Order could not be placed. Please try again.",
    502: "Unknown response from the OMS.",
    503: "Couldn't connect to the OMS. Please try again.",
    504: "Gateway timeout.",
}
TOKEN_MESSAGE = "Incorrect `api_key` or `access_token`."  # noqa: S105  (an error message, not a secret)


def _error_response(exc: BaseException) -> Response:
    """The Kite error body for anything a route raised."""
    if isinstance(exc, KiteError):
        if exc.status == 429:
            return Response.rate_limited()
        return Response.error(exc.status, exc.error_type, exc.message)
    if isinstance(exc, AuthError):
        return Response.error(exc.status, exc.error_type, exc.message)
    if isinstance(exc, FaultSpecError):
        return Response.error(400, "InputException", str(exc))
    if isinstance(exc, InputRejected):
        return Response.error(400, "InputException", exc.message)
    if isinstance(exc, OrderRejected):
        kind = "MarginException" if exc.code == "insufficient_funds" else "OrderException"
        return Response.error(400, kind, exc.message)
    if isinstance(exc, BrokerError):
        return Response.error(500, "GeneralException", exc.message)
    return Response.error(500, "GeneralException", "Internal error in the Kite simulator.")


class Hit(NamedTuple):
    user_id: str  # "" before authentication (or for unauthenticated routes)
    route: str  # e.g. "POST /orders/{variety}"
    status: int


class KiteSim:
    """The simulator's state and request dispatch (no sockets: `handle` takes a `Request`)."""

    def __init__(
        self,
        *,
        store: SessionStore | None = None,
        faults: Faults | None = None,
        limiter: OrderRateLimiter | None = None,
    ) -> None:
        self.store = store or SessionStore()
        self.faults = faults or Faults()
        self.limiter = limiter or OrderRateLimiter()
        self._lock = threading.Lock()
        self._hidden_until: dict[str, float] = {}  # order id -> monotonic time it shows up
        self._protection: dict[str, int | float] = {}  # order id -> market_protection sent
        self.hits: Counter[Hit] = Counter()  # requests answered, by caller, route and status
        self.feed = OrderFeed()  # the order-update WebSocket connections (lab.kite_sim.feed)

    # --- dispatch ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request; every failure becomes a Kite error body. Counted in `hits`.
        The latency (a fault) is slept first: the request's work is done after it."""
        return self._handle(request, sleep=True)[0]

    def answer_now(self, request: Request) -> tuple[Response, float]:
        """`handle` without the sleep: the answer, and the latency it is owed, which the caller
        waits out from the request's arrival (the memory front's reads: the simulator's own work
        inside the round trip the bench asks for, not added to it)."""
        return self._handle(request, sleep=False)

    def _handle(self, request: Request, *, sleep: bool) -> tuple[Response, float]:
        route_name, user_id, delay = f"{request.method} ?", "", 0.0
        try:
            route, args = resolve(request.method, request.path)
            route_name = f"{route.method} {route.path}"
            session = self.store.authenticate(request.header("authorization")) if route.auth else None
            user_id = session.user_id if session else ""
            if not route.admin:
                delay = self.faults.latency_s(user_id or None)
                if sleep and delay > 0:
                    time.sleep(delay)
                    delay = 0.0
            response = route.handler(Call(self, request, session, args))
        except (KiteError, AuthError, FaultSpecError, BrokerError) as exc:
            response = _error_response(exc)
        except Exception as exc:
            logger.exception("kite_sim: %s %s failed", request.method, request.path)
            response = _error_response(exc)
        with self._lock:
            self.hits[Hit(user_id, route_name, response.status)] += 1
        return response, delay

    def hit_count(
        self, *, user_id: str | None = None, route: str | None = None, status: int | None = None
    ) -> int:
        """How many requests matched (any field left None matches everything)."""
        with self._lock:
            return sum(
                n
                for hit, n in self.hits.items()
                if (user_id is None or hit.user_id == user_id)
                and (route is None or hit.route == route)
                and (status is None or hit.status == status)
            )

    # --- order writes ------------------------------------------------------------------------

    def order_write_gate(self, session: Session) -> None:
        """Before an order write: token faults (403), rate-limit faults and the limiter (429)."""
        gate = self.faults.on_order_write(session.user_id)
        if gate.expire_token:
            self.store.expire(user_id=session.user_id)
            raise KiteError(403, "TokenException", TOKEN_MESSAGE)
        if gate.rate_limited or not self.limiter.allow(session.user_id):
            raise KiteError(429, "NetworkException", "Too many requests")

    def after_accept(self, session: Session, *, order_id: str, placed: bool) -> None:
        """After an order write was carried out: hide a new order for a while, hang, or fail."""
        if placed:
            late = self.faults.late_book_s(session.user_id)
            if late > 0:
                with self._lock:
                    self._hidden_until[order_id] = time.monotonic() + late
        decision = self.faults.after_accept(session.user_id)
        if decision.sleep_s > 0:
            time.sleep(decision.sleep_s)  # the client has given up by now; the answer goes nowhere
        if decision.error_status is not None:
            raise KiteError(
                decision.error_status,
                decision.error_type,
                ERROR_MESSAGES.get(decision.error_status, "Something went wrong."),
            )

    def order_updated(self, session: Session, row: PaperOrder, *, placed: bool) -> None:
        """Push the order to the user's order-update WebSockets (API.md §12). Kite pushes nothing
        at placement, only on a fill, modification, cancellation or rejection: a placement is
        pushed when the paper exchange filled or rejected it at once."""
        if not self.feed.wants(session.user_id):
            return
        if placed and row.status in (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING):
            return
        app = self.store.app(session.api_key)
        data = payloads.order_update(
            row,
            user_id=session.user_id,
            api_secret=app.api_secret if app is not None else "",
            market_protection=self.protection(row.order_id),
        )
        self.feed.publish(session.user_id, data)

    def visible(self, order_id: str) -> bool:
        """False while a late-book fault keeps the order out of the book."""
        with self._lock:
            until = self._hidden_until.get(order_id)
            if until is None:
                return True
            if time.monotonic() >= until:
                del self._hidden_until[order_id]
                return True
            return False

    def remember_protection(self, order_id: str, value: int | float) -> None:
        with self._lock:
            self._protection[order_id] = value

    def protection(self, order_id: str) -> int | float:
        with self._lock:
            return self._protection.get(order_id, 0)

    # --- configuration -----------------------------------------------------------------------

    def set_faults(self, *, user_id: str | None = None, **spec: Any) -> dict[str, Any]:
        """`Faults.set`, plus `expire_token="now"`: expire the sessions at once."""
        state = self.faults.set(user_id=user_id, **spec)
        if spec.get("expire_token") == "now":
            self.store.expire(user_id=user_id)
        return state

    def configure(self, config: Mapping[str, Any]) -> None:
        """Load `{"apps": [...], "sessions": [...], "faults": [...]}` (the command's --config file).

        apps: {api_key, api_secret, redirect_url?, user_id?}; sessions: {user_id, api_key,
        access_token, expires_at? (ISO, aware)}; faults: {user_id?, ...spec}.
        """
        unknown = set(config) - {"apps", "sessions", "faults"}
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        for app in config.get("apps", []):
            self.store.register_app(
                api_key=str(app["api_key"]),
                api_secret=str(app["api_secret"]),
                redirect_url=str(app.get("redirect_url", "")),
                user_id=str(app.get("user_id", "")),
            )
        for entry in config.get("sessions", []):
            expires = entry.get("expires_at")
            self.store.create(
                user_id=str(entry["user_id"]),
                api_key=str(entry.get("api_key", "")),
                access_token=str(entry.get("access_token", "")),
                expires_at=datetime.fromisoformat(expires) if expires else None,
            )
        for spec in config.get("faults", []):
            spec = dict(spec)
            user_id = spec.pop("user_id", None)
            self.set_faults(user_id=user_id, **spec)


# --- the HTTP server ----------------------------------------------------------------------------


def check_loopback(host: str) -> str:
    """`host` if it names a loopback address (127.0.0.0/8, ::1, localhost), else ValueError."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc}") from None
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise ValueError(f"the Kite simulator serves loopback addresses only, not {host!r}")
    return host


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a fan-out opening a connection per child at
    # once overflows it and the kernel resets connections (the client sees an unknown outcome).
    request_queue_size = 1024
    sim: KiteSim
    in_flight: int
    idle: threading.Condition
    closing: threading.Event


def _handler(sim: KiteSim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server: _Server

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            if self.command == "GET" and (self.headers.get("Upgrade") or "").lower() == "websocket":
                self._websocket(parse_qs(parts.query))
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            with self.server.idle:
                self.server.in_flight += 1
            try:
                response = sim.handle(request)
            finally:
                connections.close_all()  # this thread's connections only
                with self.server.idle:
                    self.server.in_flight -= 1
                    self.server.idle.notify_all()
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for name, value in response.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a timeout fault)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def _websocket(self, query: dict[str, list[str]]) -> None:
            """Kite's order-update WebSocket (`?api_key=...&access_token=...`, API.md §12)."""
            self.close_connection = True
            api_key = (query.get("api_key") or [""])[0]
            token = (query.get("access_token") or [""])[0]
            key = self.headers.get("Sec-WebSocket-Key") or ""
            try:
                session = sim.store.authenticate(f"token {api_key}:{token}")
            except AuthError as exc:
                self._refuse(exc.status, exc.message)
                return
            if not key:
                self._refuse(400, "Missing Sec-WebSocket-Key.")
                return
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept_key(key))
            self.end_headers()
            self.wfile.flush()
            connection = FeedConnection(session.user_id, self.wfile)
            serve_connection(sim.feed, connection, self.connection, stopping=self.server.closing.is_set)

        def _refuse(self, status: int, message: str) -> None:
            body = message.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Nothing by default: request lines can carry tokens (`DELETE /session/token?...`)."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            logger.debug("kite_sim %s %s -> %s", self.command, urlsplit(self.path).path, code)

    return Handler


@dataclass
class RunningSim:
    """A simulator serving in a background thread."""

    sim: KiteSim
    server: _Server
    thread: threading.Thread

    @property
    def root(self) -> str:
        host, port = self.server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def ws_root(self) -> str:
        """The order-update WebSocket's root (KITE_WS_ROOT): the same port as the HTTP API."""
        return "ws" + self.root.removeprefix("http")

    def stop(self, *, drain_s: float = 5.0) -> None:
        """Stop accepting, wait (at most `drain_s`) for requests in flight, close the socket
        (and the order-update WebSockets)."""
        self.server.closing.set()
        self.server.shutdown()
        deadline = time.monotonic() + drain_s
        with self.server.idle:
            while self.server.in_flight and time.monotonic() < deadline:
                self.server.idle.wait(timeout=max(0.0, deadline - time.monotonic()))
        self.server.server_close()
        self.thread.join(timeout=drain_s)


def make_server(sim: KiteSim, *, host: str = "127.0.0.1", port: int = 0) -> _Server:
    check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(_Server):
        address_family = family

    server = Server((host, port), _handler(sim))
    server.sim = sim
    server.in_flight = 0
    server.idle = threading.Condition()
    server.closing = threading.Event()
    return server


def start(*, sim: KiteSim | None = None, host: str = "127.0.0.1", port: int = 0) -> RunningSim:
    """Serve `sim` (a new one by default) on host:port (0 = any free port) in a daemon thread."""
    sim = sim or KiteSim()
    server = make_server(sim, host=host, port=port)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kite-sim", daemon=True
    )
    thread.start()
    return RunningSim(sim=sim, server=server, thread=thread)
