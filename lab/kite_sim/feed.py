"""Kite's order-update WebSocket (kite/API.md §12), served by the simulator on its own HTTP port.

`KiteTicker` connects to `<root>?api_key=...&access_token=...`; the simulator answers the upgrade
for a live session and then pushes `{"type": "order", "data": <postback-shaped order>}` text frames
for that user's orders, plus a 1-byte binary heartbeat when idle. Only what the order stream needs:
no tick subscriptions (binary market data is never sent), no compression, no fragmentation.

RFC 6455 framing by hand (server frames unmasked, client frames masked), so the simulator needs no
WebSocket library.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import select
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
HEARTBEAT_S = 2.0  # Kite sends a 1-byte heartbeat every couple of seconds when idle
MAX_CLIENT_FRAME = 1 << 16  # the ticker only sends subscriptions and pings: anything larger is junk


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")  # noqa: S324


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server frame."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        return head + bytes([size]) + payload
    if size < 1 << 16:
        return head + bytes([126]) + struct.pack("!H", size) + payload
    return head + bytes([127]) + struct.pack("!Q", size) + payload


class FrameError(ValueError):
    """A client frame this server does not accept."""


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class Reader(Protocol):
    def read(self, n: int, /) -> bytes | None: ...


def _read_exact(stream: Reader, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) < n:
        raise EOFError("the client closed the connection")
    return data


def read_frame(stream: Reader) -> tuple[int, bytes]:
    """One client frame: (opcode, unmasked payload). Raises EOFError at the end, FrameError on junk."""
    first, second = _read_exact(stream, 2)
    opcode = first & 0x0F
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", _read_exact(stream, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", _read_exact(stream, 8))
    if size > MAX_CLIENT_FRAME:
        raise FrameError(f"client frame of {size} bytes")
    mask = _read_exact(stream, 4) if second & 0x80 else b""
    payload = _read_exact(stream, size) if size else b""
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


class FeedConnection:
    """One open WebSocket to one user; `send` may be called from any thread."""

    def __init__(self, user_id: str, wfile: Writer) -> None:
        self.user_id = user_id
        self._wfile = wfile
        self._lock = threading.Lock()
        self.closed = False

    def send(self, opcode: int, payload: bytes) -> bool:
        frame = encode_frame(opcode, payload)
        with self._lock:
            if self.closed:
                return False
            try:
                self._wfile.write(frame)
                self._wfile.flush()
            except OSError:
                self.closed = True
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self.closed = True


class OrderFeed:
    """The open order-update connections by user, and `publish` to push one update to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[str, list[FeedConnection]] = {}
        self.published = 0  # frames sent

    def add(self, connection: FeedConnection) -> None:
        with self._lock:
            self._connections.setdefault(connection.user_id, []).append(connection)

    def remove(self, connection: FeedConnection) -> None:
        with self._lock:
            live = self._connections.get(connection.user_id, [])
            if connection in live:
                live.remove(connection)

    def listeners(self, user_id: str | None = None) -> int:
        with self._lock:
            if user_id is not None:
                return len(self._connections.get(user_id, []))
            return sum(len(c) for c in self._connections.values())

    def wants(self, user_id: str) -> bool:
        """Anyone listening to this user (checked before building a payload)."""
        with self._lock:
            return bool(self._connections.get(user_id))

    def publish(self, user_id: str, data: dict[str, Any]) -> int:
        """Push `{"type": "order", "data": data}` to the user's connections; how many got it."""
        with self._lock:
            targets = list(self._connections.get(user_id, []))
        if not targets:
            return 0
        frame = json.dumps({"type": "order", "data": data}).encode()
        sent = sum(1 for c in targets if c.send(TEXT, frame))
        with self._lock:
            self.published += sent
        return sent


class SocketReader:
    """`read(n)` straight from a blocking socket (a socket file object is unusable after a timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self._sock.recv(n - len(chunks))
            if not chunk:
                break
            chunks += chunk
        return bytes(chunks)


def serve_connection(
    feed: OrderFeed,
    connection: FeedConnection,
    sock: socket.socket,
    *,
    stopping: Callable[[], bool],
    poll_s: float = 0.25,
) -> None:
    """Run one upgraded connection until the client closes it or the server stops: answer pings,
    echo a close, send a heartbeat when idle. The caller has sent the 101 answer (and the client
    sends nothing before it, so no frame waits in an HTTP read buffer)."""
    feed.add(connection)
    reader = SocketReader(sock)
    idle = 0.0
    try:
        while not stopping() and not connection.closed:
            ready, _, _ = select.select([sock], [], [], poll_s)
            if not ready:
                idle += poll_s
                if idle >= HEARTBEAT_S:
                    connection.send(BINARY, b"\x00")  # heartbeat
                    idle = 0.0
                continue
            try:
                opcode, payload = read_frame(reader)
            except (EOFError, FrameError, OSError):
                break
            if opcode == PING:
                connection.send(PONG, payload)
            elif opcode == CLOSE:
                connection.send(CLOSE, payload[:2])
                break
            # TEXT (subscribe/mode messages of the ticker) and PONG: nothing to do
        else:
            connection.send(CLOSE, struct.pack("!H", 1001))  # going away
    finally:
        feed.remove(connection)
        connection.close()
