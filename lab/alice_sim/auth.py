"""Clients, auth codes and sessions of the Alice Blue simulator, in memory (a restart forgets them)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass

from brokers.simcreds import ALICE_SIMULATOR_MARK, new_alice_simulator_key


class AliceAuthError(Exception):
    """A login or session problem: `code` an EC code (or "" for a login refusal), HTTP `status`."""

    def __init__(self, code: str, message: str, status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Client:
    user_id: str
    app_code: str
    api_secret: str

    def __repr__(self) -> str:
        return f"Client({self.user_id!r})"


def _jwt(user_id: str, lifetime_s: int) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"exp": int(time.time()) + lifetime_s, "sub": user_id, "jti": secrets.token_hex(8)}
    # The simulator's mark in front: the adapter never sends such a session off this machine.
    header = part({"alg": "none", "typ": "JWT"})
    return f"{ALICE_SIMULATOR_MARK}{header}.{part(claims)}.{secrets.token_urlsafe(16)}"


class ClientStore:
    """Clients registered with the simulator, outstanding auth codes and sessions."""

    SESSION_LIFETIME_S = 60 * 86400  # the docs' sample userSession lives 60 days

    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}
        self._codes: dict[str, str] = {}  # auth code -> user id
        self._sessions: dict[str, str] = {}  # userSession -> user id
        self._lock = threading.Lock()

    def register(self, *, user_id: str, app_code: str = "", api_secret: str = "") -> Client:
        """A client (its paper account has the same id); a missing app code or secret is made up."""
        client = Client(
            user_id=user_id.strip().upper(),
            app_code=app_code or new_alice_simulator_key(),
            api_secret=api_secret or secrets.token_hex(16),
        )
        with self._lock:
            self._clients[client.user_id] = client
        return client

    def client(self, user_id: str) -> Client | None:
        with self._lock:
            return self._clients.get(user_id.strip().upper())

    def auth_code(self, user_id: str) -> str:
        """What Alice Blue's login page hands the app's redirect URL (`authCode`), once."""
        client = self.client(user_id)
        if client is None:
            raise AliceAuthError("", "User does not login. Please login")
        code = secrets.token_urlsafe(12)
        with self._lock:
            self._codes[code] = client.user_id
        return code

    def login(self, checksum: str) -> tuple[str, str]:
        """`getUserDetails`: the checksum of an outstanding auth code; returns (user id, session)."""
        with self._lock:
            for code, user_id in list(self._codes.items()):
                client = self._clients[user_id]
                expected = hashlib.sha256(f"{user_id}{code}{client.api_secret}".encode()).hexdigest()
                if secrets.compare_digest(expected, checksum.strip()):
                    del self._codes[code]  # an auth code is good for one session
                    token = _jwt(user_id, self.SESSION_LIFETIME_S)
                    self._sessions[token] = user_id
                    return user_id, token
        raise AliceAuthError("", "Invalid auth code")

    def open(self, user_id: str) -> str:
        """A session for a registered client without the login dance (tests, demos)."""
        client = self.client(user_id)
        if client is None:
            raise KeyError(user_id)
        token = _jwt(client.user_id, self.SESSION_LIFETIME_S)
        with self._lock:
            self._sessions[token] = client.user_id
        return token

    def authenticate(self, authorization: str | None) -> str:
        """The user id of a `Bearer <userSession>` header; EC087 (HTTP 401) otherwise."""
        token = (authorization or "").strip()
        if token.lower().startswith("bearer "):
            token = token[len("bearer ") :].strip()
        with self._lock:
            user_id = self._sessions.get(token) if token else None
        if user_id is None:
            raise AliceAuthError("EC087", "Session Expired", status=401)
        return user_id

    def expire(self, *, user_id: str | None = None) -> int:
        with self._lock:
            dead = [t for t, u in self._sessions.items() if user_id is None or u == user_id.upper()]
            for token in dead:
                del self._sessions[token]
        return len(dead)
