"""Clients and access tokens of the Dhan simulator, in memory (a restart forgets them)."""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from brokers.angel.session import TOTP_STEP_S, totp_at
from brokers.simcreds import new_dhan_simulator_credential

TOKEN_LIFETIME = timedelta(hours=24)


class DhanAuthError(Exception):
    """A login or token problem, with Dhan's error code and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 401):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    pin: str
    totp_secret: str
    api_key: str

    def __repr__(self) -> str:
        return f"Client({self.client_id!r})"


@dataclass(slots=True)
class SimToken:
    client_id: str
    access_token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"SimToken({self.client_id!r})"


class ClientStore:
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.now = clock
        self._clients: dict[str, Client] = {}
        self._tokens: dict[str, SimToken] = {}
        self._lock = threading.Lock()

    def register(self, *, client_id: str, pin: str = "", totp_secret: str = "", api_key: str = "") -> Client:
        """A client (its paper account has the same id); missing secrets are made up."""
        client = Client(
            client_id=client_id.strip(),
            pin=pin or f"{secrets.randbelow(1000000):06d}",
            totp_secret=totp_secret or base64.b32encode(secrets.token_bytes(20)).decode(),
            api_key=api_key or new_dhan_simulator_credential(),
        )
        with self._lock:
            self._clients[client.client_id] = client
        return client

    def client(self, client_id: str) -> Client | None:
        with self._lock:
            return self._clients.get(client_id.strip())

    def login(self, *, client_id: str, pin: str, totp: str) -> SimToken:
        client = self.client(client_id)
        if client is None or pin != client.pin:
            raise DhanAuthError("DH-901", "Invalid client id or pin")
        now = self.now()
        step = timedelta(seconds=TOTP_STEP_S)
        if totp not in {totp_at(client.totp_secret, now + k * step) for k in (-1, 0, 1)}:
            raise DhanAuthError("DH-901", "Invalid TOTP")
        return self.open(client.client_id)

    def open(self, client_id: str) -> SimToken:
        """A new 24-hour access token for a registered client (tests, the demo)."""
        token = SimToken(
            client_id=client_id.strip(),
            access_token=new_dhan_simulator_credential(48),
            expires_at=self.now() + TOKEN_LIFETIME,
        )
        with self._lock:
            self._tokens[token.access_token] = token
        return token

    def authenticate(self, access_token: str | None, client_id: str | None) -> SimToken:
        if not access_token:
            raise DhanAuthError("DH-901", "Client ID or user generated access token is invalid or expired.")
        with self._lock:
            token = self._tokens.get(access_token)
        if token is None or (client_id and client_id.strip() != token.client_id):
            # Measured at Dhan: a revoked or expired token is answered 400 DH-906 "Invalid Token".
            raise DhanAuthError("DH-906", "Invalid Token", status=400)
        if self.now() >= token.expires_at:
            raise DhanAuthError("DH-901", "Client ID or user generated access token is invalid or expired.")
        return token

    def expire(self, *, client_id: str | None = None) -> int:
        with self._lock:
            dead = [t for t in self._tokens.values() if client_id is None or t.client_id == client_id.strip()]
            for token in dead:
                self._tokens.pop(token.access_token, None)
        return len(dead)
