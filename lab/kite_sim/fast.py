"""The simulator's bench mode: an asyncio HTTP/1.1 front that answers order writes from memory.

`bench_fanout` measures the engine, so the broker it talks to must cost less than the engine per
request (DESIGN §8). The threaded server spends a thread, a database connection and the paper
exchange's writes on every order; this front answers, on one event loop:

- `POST /orders/{variety}` of a user not in `persist` from memory: the same checks as Kite for
  the fields the engine sends, the simulator's faults gate and per-account order limit, the
  latency as a timer (no thread sleeps), an order id; the order is kept in memory, COMPLETE;
- `GET /orders` of such a user from memory (how the engine looks an unknown outcome up by tag);
- `GET /_sim/stats`: requests answered, the process's CPU seconds, orders per user;
- everything else (the master's reads and orders, logins, admin routes) through `KiteSim.handle`
  in a small thread pool, persisted in the paper exchange as ever. A read there is answered the
  latency after it arrived, the simulator's own work inside it; a write waits the latency, then
  is done (the master's order is placed, and streamed, no sooner than its round trip allows).

The order-update WebSocket is served by the threaded server of the same `KiteSim` on a port of
its own (`MemoryFront.ws_root`). Loopback only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.db import connections

from lab.kite_sim.auth import AuthError, Session
from lab.kite_sim.server import KiteSim, RunningSim, check_loopback, start
from lab.kite_sim.wire import KiteError, Request, Response

logger = logging.getLogger(__name__)

ORDER_FIELDS = ("exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type")
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}


@dataclass
class MemoryBook:
    """Orders answered from memory, by user (Kite-shaped dicts)."""

    persist: frozenset[str] = frozenset()  # users whose orders go to the paper exchange
    orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    first_at: float | None = None  # wall-clock instant (epoch seconds) of the first order placed
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def answers(self, user_id: str) -> bool:
        return user_id not in self.persist

    def place(self, user_id: str, form: dict[str, list[str]], variety: str) -> str:
        values = {name: (form.get(name) or [""])[0].strip() for name in (*ORDER_FIELDS, "tag", "price")}
        for name in ORDER_FIELDS:
            if not values[name]:
                raise KiteError(400, "InputException", f"Missing `{name}`.")
        try:
            quantity = int(values["quantity"])
        except ValueError:
            raise KiteError(400, "InputException", "Invalid `quantity`.") from None
        if quantity <= 0:
            raise KiteError(400, "InputException", "Invalid `quantity`.")
        protection = (form.get("market_protection") or [""])[0]
        if values["order_type"].upper() in ("MARKET", "SL-M") and not protection:
            raise KiteError(
                400,
                "InputException",
                "Market orders without market protection are not allowed via API. "
                "Please set `market_protection` or use a Limit order.",
            )
        if self.first_at is None:
            self.first_at = time.time()
        order_id = f"{datetime.now():%y%m%d}{next(self._ids):012d}"
        stamp = f"{datetime.now():%Y-%m-%d %H:%M:%S}"
        self.orders.setdefault(user_id, []).append(
            {
                "placed_by": user_id,
                "order_id": order_id,
                "exchange_order_id": order_id,
                "parent_order_id": None,
                "status": "COMPLETE",
                "status_message": None,
                "status_message_raw": None,
                "order_timestamp": stamp,
                "exchange_update_timestamp": stamp,
                "exchange_timestamp": stamp,
                "variety": variety,
                "modified": False,
                "exchange": values["exchange"].upper(),
                "tradingsymbol": values["tradingsymbol"].upper(),
                "instrument_token": 0,
                "order_type": values["order_type"].upper(),
                "transaction_type": values["transaction_type"].upper(),
                "validity": "DAY",
                "product": values["product"].upper(),
                "quantity": quantity,
                "disclosed_quantity": 0,
                "price": float(values["price"] or 0),
                "trigger_price": 0,
                "average_price": float(values["price"] or 0),
                "filled_quantity": quantity,
                "pending_quantity": 0,
                "cancelled_quantity": 0,
                "market_protection": 0,
                "meta": {},
                "tag": values["tag"] or None,
                "tags": [values["tag"]] if values["tag"] else [],
                "guid": order_id,
            }
        )
        return order_id

    def counts(self) -> dict[str, int]:
        return {user: len(orders) for user, orders in self.orders.items()}


class _Protocol(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection; requests are answered one at a time, in order."""

    def __init__(self, front: MemoryFront) -> None:
        self.front = front
        self.buffer = bytearray()
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        if self.busy or self.transport is None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self.transport.close()
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            self.transport.close()
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        method, target, _ = [*head[0].split(" "), "", "", ""][:3]
        self.busy = True
        self.front.dispatch(self, method, target, headers, body)

    def respond(self, response: Response) -> None:
        """Write one answer (on the loop) and read the next request."""
        self.busy = False
        if self.transport is None:
            return
        reason = REASONS.get(response.status, "Error")
        extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
        head = (
            f"HTTP/1.1 {response.status} {reason}\r\nContent-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n{extra}\r\n"
        )
        self.transport.write(head.encode("latin-1") + response.body)
        self.front.answered += 1
        self._next()


def is_read(method: str, path: str) -> bool:
    """A request that changes nothing: a GET, or a margin calculation (POSTed, but a question)."""
    return method == "GET" or path.startswith("/margins/")


class MemoryFront:
    """The event loop, the memory book and the `KiteSim` behind them (see the module docstring)."""

    def __init__(self, sim: KiteSim, book: MemoryBook, *, pool_size: int = 8) -> None:
        self.sim = sim
        self.book = book
        self.loop = asyncio.new_event_loop()
        self.pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="kite-sim-db")
        self.answered = 0
        self.from_memory = 0
        self.routes: Counter[str] = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ws: RunningSim | None = None
        self.address: tuple[str, int] = ("", 0)

    # --- dispatch (on the loop) ------------------------------------------------------------------

    def dispatch(
        self, proto: _Protocol, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> None:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if method == "GET" and path == "/_sim/stats":
            proto.respond(Response.ok(self.stats()))
            return
        memory = (method == "POST" and path.startswith("/orders/") and path.count("/") == 2) or (
            method == "GET" and path == "/orders"
        )
        if memory:
            try:
                session = self.sim.store.authenticate(headers.get("authorization"))
            except AuthError as exc:
                proto.respond(Response.error(exc.status, exc.error_type, exc.message))
                return
            if self.book.answers(session.user_id):
                self._from_memory(proto, session, method, path, body)
                return
        request = Request(
            method=method,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=headers,
            body=body,
        )
        if not is_read(method, path):
            # A write waits the latency first and is done after it, as on the threaded server:
            # an order is placed (and streamed) no sooner than its round trip allows.
            future = self.loop.run_in_executor(self.pool, self._through_sim, request)
            future.add_done_callback(lambda done: proto.respond(done.result()))
            return
        # A read is answered the latency after it arrived, the simulator's own work (the paper
        # exchange's queries, in a thread pool sharing this process) inside that round trip, or
        # when the work is done if it takes longer: the bench measures the engine, not the rig.
        arrived = self.loop.time()

        def answer(done: asyncio.Future[tuple[Response, float]]) -> None:
            response, delay = done.result()
            self.loop.call_at(arrived + delay, proto.respond, response)

        self.loop.run_in_executor(self.pool, self._read_through_sim, request).add_done_callback(answer)

    def _through_sim(self, request: Request) -> Response:
        try:
            return self.sim.handle(request)
        finally:
            connections.close_all()  # this pool thread's connections

    def _read_through_sim(self, request: Request) -> tuple[Response, float]:
        try:
            return self.sim.answer_now(request)
        finally:
            connections.close_all()

    def _from_memory(self, proto: _Protocol, session: Session, method: str, path: str, body: bytes) -> None:
        self.from_memory += 1
        try:
            if method == "GET":
                response = Response.ok(list(self.book.orders.get(session.user_id, [])))
            else:
                self.sim.order_write_gate(session)
                form = parse_qs(body.decode(), keep_blank_values=True)
                order_id = self.book.place(session.user_id, form, path.rsplit("/", 1)[1])
                response = Response.ok({"order_id": order_id})
        except KiteError as exc:
            response = (
                Response.rate_limited()
                if exc.status == 429
                else Response.error(exc.status, exc.error_type, exc.message)
            )
        delay = self.sim.faults.latency_s(session.user_id)
        if delay > 0:
            self.loop.call_later(delay, proto.respond, response)
        else:
            proto.respond(response)

    def stats(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "from_memory": self.from_memory,
            "cpu_s": time.process_time(),
            "orders": self.book.counts(),
            "first_order_at": self.book.first_at,
        }

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    @property
    def ws_root(self) -> str:
        return self._ws.ws_root if self._ws is not None else ""

    def start(self, *, host: str = "127.0.0.1", port: int = 0) -> MemoryFront:
        check_loopback(host)
        ready = threading.Event()

        async def serve() -> None:
            self._server = await self.loop.create_server(
                lambda: _Protocol(self), host, port, backlog=4096, reuse_address=True
            )
            sockname = self._server.sockets[0].getsockname()
            self.address = (str(sockname[0]), int(sockname[1]))
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="kite-sim-loop", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the simulator's event loop did not start")
        self._ws = start(sim=self.sim, host=host, port=0)  # the order-update WebSocket
        return self

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.stop()
        if self._server is not None:
            server = self._server

            async def close() -> None:
                server.close()

            asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.pool.shutdown(wait=True, cancel_futures=True)


def stats(root: str) -> dict[str, Any]:
    """`GET /_sim/stats` of a memory front (answered, from_memory, cpu_s, orders by user)."""
    import urllib.request

    with urllib.request.urlopen(root + "/_sim/stats", timeout=10) as answer:  # noqa: S310  (loopback root)
        return dict(json.loads(answer.read())["data"])
