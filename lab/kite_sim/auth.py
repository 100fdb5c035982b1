"""Apps, request tokens and access-token sessions of the simulator, kept in memory.

A session maps `(api_key, access_token)` to a paper user id. Sessions are created by the login
flow (`/connect/login` or `/_sim/login` issues a request token, `POST /session/token` exchanges it
with the checksum of kite/API.md §1) or directly by tests (`SessionStore.create`, `POST
/_sim/sessions`). Like Kite's, an access token dies at the first 06:00 IST after it was issued,
on logout, or when a test expires it. The access tokens (and api keys) it makes up carry the
simulator's mark (`brokers.simcreds.SIMULATOR_MARK`): the Kite adapter sends them nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from brokers.simcreds import API_KEY_CHARS, TOKEN_CHARS, new_simulator_credential

IST = ZoneInfo("Asia/Kolkata")
REQUEST_TOKEN_LIFETIME = timedelta(minutes=5)


class AuthError(Exception):
    """A login or session problem; `error_type` and `status` are what Kite would answer."""

    def __init__(self, message: str, *, error_type: str = "TokenException", status: int = 403):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = status


def _utcnow() -> datetime:
    return datetime.now(UTC)


def next_expiry(moment: datetime) -> datetime:
    """The first 06:00 IST strictly after `moment` (aware), as aware UTC."""
    local = moment.astimezone(IST)
    expiry = local.replace(hour=6, minute=0, second=0, microsecond=0)
    if expiry <= local:
        expiry += timedelta(days=1)
    return expiry.astimezone(UTC)


def checksum(*parts: str) -> str:
    """Kite's checksum: sha256 hex of the plain concatenation (api_key + token + api_secret)."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def _new_token() -> str:
    return secrets.token_hex(TOKEN_CHARS // 2)


@dataclass(frozen=True, slots=True)
class App:
    """A registered Kite Connect app: its secret (for checksums) and where logins are sent back."""

    api_key: str
    api_secret: str
    redirect_url: str = ""
    user_id: str = ""  # who logs in at /connect/login when the request names nobody

    def __repr__(self) -> str:  # never show the secret
        return f"App(api_key={self.api_key!r}, redirect_url={self.redirect_url!r})"


@dataclass(slots=True)
class Session:
    user_id: str
    api_key: str
    access_token: str
    created_at: datetime
    expires_at: datetime
    public_token: str = field(default_factory=_new_token)

    def __repr__(self) -> str:  # never show the tokens
        return f"Session(user_id={self.user_id!r}, api_key={self.api_key!r}, expires_at={self.expires_at})"

    def alive(self, now: datetime) -> bool:
        return now < self.expires_at


@dataclass(slots=True)
class _RequestToken:
    api_key: str
    user_id: str
    expires_at: datetime


class SessionStore:
    """Thread-safe in-memory apps and sessions."""

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._apps: dict[str, App] = {}
        self._request_tokens: dict[str, _RequestToken] = {}
        self._sessions: dict[tuple[str, str], Session] = {}

    def now(self) -> datetime:
        return self._clock()

    # --- apps and login ----------------------------------------------------------------------

    def register_app(
        self, *, api_key: str, api_secret: str, redirect_url: str = "", user_id: str = ""
    ) -> App:
        if not api_key or not api_secret:
            raise AuthError("api_key and api_secret are required", error_type="InputException", status=400)
        app = App(api_key=api_key, api_secret=api_secret, redirect_url=redirect_url, user_id=user_id)
        with self._lock:
            self._apps[api_key] = app
        return app

    def app(self, api_key: str) -> App | None:
        with self._lock:
            return self._apps.get(api_key)

    def issue_request_token(self, *, api_key: str, user_id: str) -> str:
        """A one-time request token for `user_id` logging in to the app `api_key` (a few minutes)."""
        if not user_id:
            raise AuthError("user_id is required", error_type="InputException", status=400)
        with self._lock:
            if api_key not in self._apps:
                raise AuthError("Invalid `api_key`.", error_type="InputException", status=400)
            token = _new_token()
            self._request_tokens[token] = _RequestToken(
                api_key=api_key, user_id=user_id, expires_at=self._clock() + REQUEST_TOKEN_LIFETIME
            )
        return token

    def exchange(self, *, api_key: str, request_token: str, checksum_hex: str) -> Session:
        """`POST /session/token`: a valid, unused request token and the right checksum -> a session."""
        if not api_key or not request_token or not checksum_hex:
            raise AuthError(
                "Missing `api_key`, `request_token` or `checksum`.", error_type="InputException", status=400
            )
        now = self._clock()
        with self._lock:
            app = self._apps.get(api_key)
            if app is None:
                raise AuthError("Invalid `api_key`.", error_type="InputException", status=400)
            expected = checksum(api_key, request_token, app.api_secret)
            if not hmac.compare_digest(expected, checksum_hex.lower()):
                raise AuthError("Invalid `checksum`.", error_type="TokenException", status=403)
            issued = self._request_tokens.pop(request_token, None)
            if issued is None or issued.api_key != api_key or issued.expires_at <= now:
                raise AuthError("Token is invalid or has expired.")
            session = Session(
                user_id=issued.user_id,
                api_key=api_key,
                access_token=new_simulator_credential(),
                created_at=now,
                expires_at=next_expiry(now),
            )
            self._sessions[(api_key, session.access_token)] = session
        return session

    # --- sessions ----------------------------------------------------------------------------

    def create(
        self,
        *,
        user_id: str,
        api_key: str = "",
        access_token: str = "",
        expires_at: datetime | None = None,
    ) -> Session:
        """Register a session directly (tests, `--config`); missing key or token are generated."""
        if not user_id:
            raise AuthError("user_id is required", error_type="InputException", status=400)
        now = self._clock()
        session = Session(
            user_id=user_id,
            api_key=api_key or new_simulator_credential(API_KEY_CHARS),
            access_token=access_token or new_simulator_credential(),
            created_at=now,
            expires_at=expires_at or next_expiry(now),
        )
        with self._lock:
            self._sessions[(session.api_key, session.access_token)] = session
        return session

    def authenticate(self, authorization: str | None) -> Session:
        """The live session named by `Authorization: token api_key:access_token`, or AuthError (403)."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        api_key, sep, access_token = credentials.strip().partition(":")
        if scheme.lower() != "token" or not sep or not api_key or not access_token:
            raise AuthError("Incorrect `api_key` or `access_token`.")
        with self._lock:
            session = self._sessions.get((api_key, access_token))
        if session is None or not session.alive(self._clock()):
            raise AuthError("Incorrect `api_key` or `access_token`.")
        return session

    def invalidate(self, *, api_key: str, access_token: str) -> bool:
        """`DELETE /session/token`: the session ends now. True when there was one."""
        with self._lock:
            return self._sessions.pop((api_key, access_token), None) is not None

    def expire(self, *, user_id: str | None = None, access_token: str | None = None) -> int:
        """Expire now the sessions of `user_id` (or the one with `access_token`, or all); returns how many."""
        now = self._clock()
        count = 0
        with self._lock:
            for session in self._sessions.values():
                if user_id is not None and session.user_id != user_id:
                    continue
                if access_token is not None and session.access_token != access_token:
                    continue
                if session.alive(now):
                    session.expires_at = now
                    count += 1
        return count

    def sessions(self, *, user_id: str | None = None) -> list[Session]:
        with self._lock:
            return [s for s in self._sessions.values() if user_id is None or s.user_id == user_id]
