"""What the broker simulators (lab/angel_sim, lab/dhan_sim, lab/alice_sim) share around their routes.

- `make_server` / `serve`: a threaded HTTP server on a loopback address (lab.kite_sim's
  `check_loopback`), each request in its own daemon thread, turned into a lab.kite_sim.wire
  `Request` for the simulator's `handle`, its database connections closed when the request ends,
  nothing logged (request lines and bodies carry PINs, TOTPs, checksums and sessions).
- `RunningHttp`: the running server (`root`, `stop()`); a simulator's RunningSim adds its sockets.
- `WriteLimiter`: a broker's order-write windows per account, on the simulator's side (a refused
  write does not count); a simulator names its windows.
- `ServerFault`: a fault that answers with a bare HTTP status (a gateway's HTML page).

Each simulator keeps its routes, payloads, errors and what it calls an account.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from django.db import connections

from lab.kite_sim.server import check_loopback
from lab.kite_sim.wire import Request, Response


class Handles(Protocol):
    def handle(self, request: Request) -> Response: ...


S = TypeVar("S", bound=Handles)


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    sim: Handles


def _handler(sim: Handles) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            try:
                response = sim.handle(request)
            finally:
                connections.close_all()
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Nothing: request lines and bodies can carry PINs, TOTPs, checksums and sessions."""

    return Handler


def make_server(sim: Handles, *, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    """`sim` behind a threaded HTTP server bound to host:port (loopback only; 0 = any free port)."""
    check_loopback(host)
    server = SimServer((host, port), _handler(sim))
    server.sim = sim
    return server


def serve(server: SimServer, *, name: str) -> threading.Thread:
    """Serve `server` in a started daemon thread called `name`."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return thread


@dataclass
class RunningHttp(Generic[S]):
    """A simulator served over HTTP: `root` is its base URL, `stop()` shuts it down."""

    sim: S
    server: SimServer
    thread: threading.Thread

    @property
    def root(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class WriteLimiter:
    """A broker's order-write windows (seconds, writes allowed) per account. A refused write does
    not count. A simulator's subclass names its `default_windows`."""

    default_windows: ClassVar[tuple[tuple[float, int], ...]] = ()

    def __init__(
        self,
        windows: tuple[tuple[float, int], ...] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.windows = self.default_windows if windows is None else windows
        self._clock = clock
        self._writes: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, account: str) -> bool:
        now = self._clock()
        longest = max(span for span, _ in self.windows)
        with self._lock:
            sent = self._writes.setdefault(account, deque())
            while sent and sent[0] <= now - longest:
                sent.popleft()
            for span, cap in self.windows:
                if sum(1 for t in sent if t > now - span) >= cap:
                    return False
            sent.append(now)
            return True


class ServerFault(Exception):
    """Answered with a bare HTTP status (the fault spec's `error_status` after an accepted write)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status
