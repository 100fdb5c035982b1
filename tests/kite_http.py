"""A tiny scripted HTTP server that speaks Kite's envelopes, for driving the real SDK in tests.

Binds 127.0.0.1 on an ephemeral port, serves canned replies per (method, path), and records
every request. Not the Kite simulator: no state, no auth checks beyond what a test scripts.

    with KiteHTTPServer() as server:
        server.add("GET", "/user/margins", Reply(body=fixture_json("margins.json")))
        broker = KiteBroker(api_key="k", access_token="t", root=server.root)
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Byte-for-byte copies of the shared Kite fixtures (see README.md there for their provenance).
FIXTURES_DIR = Path(os.environ.get("KITE_FIXTURES_DIR", Path(__file__).parent / "fixtures" / "kite"))


def fixture_path(name: str) -> Path:
    return FIXTURES_DIR / name


def fixture_bytes(name: str) -> bytes:
    return fixture_path(name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def unused_port() -> int:
    """A local port nothing listens on (bound and released), for connection-refused tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class Reply:
    """One canned response. A dict/list body is sent as JSON; str/bytes as is."""

    status: int = 200
    body: Any = None
    content_type: str | None = "application/json"
    delay_s: float = 0.0  # sleep before answering (read-timeout tests)
    drop: bool = False  # close the connection without any answer
    headers: tuple[tuple[str, str], ...] = ()  # further response headers (a redirect's Location)

    @classmethod
    def ok(cls, data: Any) -> Reply:
        return cls(body={"status": "success", "data": data})

    @classmethod
    def fixture(cls, name: str, status: int = 200) -> Reply:
        if name.endswith(".csv"):
            return cls(status=status, body=fixture_bytes(name), content_type="text/csv")
        return cls(status=status, body=fixture_json(name))

    @classmethod
    def error(cls, status: int, error_type: str, message: str = "error") -> Reply:
        return cls(status=status, body={"status": "error", "message": message, "error_type": error_type})

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    target: str  # the request line as sent: an absolute URL when it came through a proxy
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Recorded], Reply]


@dataclass
class _Route:
    replies: list[Reply] = field(default_factory=list)
    responder: Responder | None = None

    def next_reply(self) -> Reply:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


class KiteHTTPServer:
    """Scripted replies per (method, path); the last reply of a route repeats."""

    def __init__(self, *, idle_timeout_s: float | None = None, tls: ssl.SSLContext | None = None) -> None:
        """`idle_timeout_s`: the server closes a kept-alive connection idle that long (as real
        servers do); `tls`: serve https with this server-side context."""
        self.idle_timeout_s = idle_timeout_s
        self.tls = tls
        self._routes: dict[tuple[str, str], _Route] = {}
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting --------------------------------------------------------------------------

    def add(self, method: str, path: str, *replies: Reply) -> None:
        if not replies:
            raise ValueError("give at least one reply")
        with self._lock:
            self._routes[(method.upper(), path)] = _Route(replies=list(replies))

    def respond(self, method: str, path: str, responder: Responder) -> None:
        with self._lock:
            self._routes[(method.upper(), path)] = _Route(responder=responder)

    def calls(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and r.path == path]

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def root(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        if self.tls is not None:
            return f"https://localhost:{port}"  # the name in the test certificate
        return f"http://{host!s}:{port}"

    def start(self) -> KiteHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="kite-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> KiteHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ----------------------------------------------------------------------------

    def _dispatch(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            route = self._routes.get((request.method, request.path))
            if route is None:
                return Reply.error(404, "GeneralException", f"no route {request.method} {request.path}")
            if route.responder is None:
                return route.next_reply()
        return route.responder(request)  # outside the lock: requests may overlap, as on a real server

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = owner.idle_timeout_s  # None: a kept-alive connection stays open

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Recorded(
                    method=self.command,
                    target=self.path,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers=dict(self.headers.items()),
                    body=body,
                )
                reply = owner._dispatch(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = reply.encoded()
                try:
                    self.send_response(reply.status)
                    if reply.content_type is not None:
                        self.send_header("Content-Type", reply.content_type)
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout tests)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        return Handler
