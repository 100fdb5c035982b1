"""Clients and sessions of the Angel simulator, in memory (a restart forgets them)."""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from brokers.angel.session import TOTP_STEP_S, session_expiry, totp_at
from brokers.simcreds import new_angel_simulator_key


class AngelAuthError(Exception):
    """A login or token problem, with Angel's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


TOKEN_ERRORS = {
    "AG8001": "Invalid Token",
    "AG8002": "Token Expired",
    "AG8003": "Token missing",
}


@dataclass(frozen=True, slots=True)
class Client:
    client_code: str
    pin: str
    totp_secret: str
    api_key: str

    def __repr__(self) -> str:
        return f"Client({self.client_code!r})"


@dataclass(slots=True)
class SimSession:
    client_code: str
    jwt_token: str
    refresh_token: str
    feed_token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"SimSession({self.client_code!r})"


def _token() -> str:
    return "eyJhbGciOiJIUzUxMiJ9." + secrets.token_urlsafe(24)


class ClientStore:
    """Clients registered with the simulator and their sessions."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.now = clock
        self._clients: dict[str, Client] = {}
        self._sessions: dict[str, SimSession] = {}  # jwt -> session
        self._refresh: dict[str, SimSession] = {}  # refresh token -> session
        self._lock = threading.Lock()

    def register(
        self, *, client_code: str, pin: str = "", totp_secret: str = "", api_key: str = ""
    ) -> Client:
        """A client (its paper account has the same id); missing secrets are made up."""
        client = Client(
            client_code=client_code.strip().upper(),
            # 8 digits (Angel One takes 4 to 8): tests assert a PIN never appears in messages that
            # carry dates and codes, which a random 4-digit one sometimes did ("2026").
            pin=pin or f"{secrets.randbelow(10**8):08d}",
            totp_secret=totp_secret or base64.b32encode(secrets.token_bytes(20)).decode(),
            api_key=api_key or new_angel_simulator_key(),
        )
        with self._lock:
            self._clients[client.client_code] = client
        return client

    def client(self, client_code: str) -> Client | None:
        with self._lock:
            return self._clients.get(client_code.strip().upper())

    def login(self, *, api_key: str, client_code: str, pin: str, totp: str) -> SimSession:
        client = self.client(client_code)
        if client is None or client.api_key != api_key:
            raise AngelAuthError("AB1000", "Invalid Email Or Password")
        if pin != client.pin:
            raise AngelAuthError("AB1000", "Invalid Email Or Password")
        now = self.now()
        step = timedelta(seconds=TOTP_STEP_S)
        if totp not in {totp_at(client.totp_secret, now + k * step) for k in (-1, 0, 1)}:
            raise AngelAuthError("AB1050", "Invalid totp")
        return self.open(client.client_code)

    def open(self, client_code: str) -> SimSession:
        """A new session for a registered client (tests, `/_sim/sessions`)."""
        session = SimSession(
            client_code=client_code.strip().upper(),
            jwt_token=_token(),
            refresh_token=_token(),
            feed_token=secrets.token_hex(16),
            expires_at=session_expiry(self.now()),
        )
        with self._lock:
            self._sessions[session.jwt_token] = session
            self._refresh[session.refresh_token] = session
        return session

    def authenticate(self, authorization: str | None, api_key: str | None) -> SimSession:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AngelAuthError("AG8003", TOKEN_ERRORS["AG8003"])
        token = authorization[len("bearer ") :].strip()
        with self._lock:
            session = self._sessions.get(token)
        if session is None:
            raise AngelAuthError("AG8001", TOKEN_ERRORS["AG8001"])
        client = self.client(session.client_code)
        if client is None or client.api_key != (api_key or ""):
            raise AngelAuthError("AG8001", TOKEN_ERRORS["AG8001"])
        if self.now() >= session.expires_at:
            raise AngelAuthError("AG8002", TOKEN_ERRORS["AG8002"])
        return session

    def renew(self, refresh_token: str) -> SimSession:
        with self._lock:
            old = self._refresh.get(refresh_token)
        if old is None or self.now() >= old.expires_at:
            raise AngelAuthError("AB8051", "Refresh Token Expired")
        return self.open(old.client_code)

    def expire(self, *, client_code: str | None = None) -> int:
        """Kill the sessions of one client (or all); returns how many died."""
        with self._lock:
            dead = [
                s
                for s in self._sessions.values()
                if client_code is None or s.client_code == client_code.upper()
            ]
            for session in dead:
                self._sessions.pop(session.jwt_token, None)
                self._refresh.pop(session.refresh_token, None)
        return len(dead)

    def logout(self, jwt_token: str) -> None:
        with self._lock:
            session = self._sessions.pop(jwt_token, None)
            if session is not None:
                self._refresh.pop(session.refresh_token, None)
