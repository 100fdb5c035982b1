"""Angel One's headless login: client code, PIN and the current TOTP code (docs/angel.md §Login).

`loginByPassword` returns a JWT (the `Authorization` bearer), a refresh token and a feed token.
The session lives until midnight IST; `generateTokens` with the refresh token gives a new JWT the
same day. The TOTP code is computed here from the secret the client stored (base32, RFC 6238,
30-second steps, 6 digits), so the daily login needs nobody at a keyboard.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from brokers.errors import BrokerError, TokenExpired

IST = ZoneInfo("Asia/Kolkata")


def session_expiry(now: datetime) -> datetime:
    """When a session opened at `now` dies: the next midnight IST, as aware UTC."""
    local = now.astimezone(IST)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 0), tzinfo=IST)
    return midnight.astimezone(UTC)


TOTP_STEP_S = 30
TOTP_DIGITS = 6


def _secret_bytes(secret: str) -> bytes:
    text = secret.replace(" ", "").replace("-", "").upper().rstrip("=")
    if not text:
        raise ValueError("empty secret")
    return base64.b32decode(text + "=" * (-len(text) % 8))


def totp_at(secret: str, now: datetime) -> str:
    """RFC 6238 (HMAC-SHA1, 30-second steps, 6 digits) for a base32 secret. Written out here rather
    than taken from pyotp, which refuses secrets under 112 bits that authenticator apps accept."""
    counter = int(now.timestamp()) // TOTP_STEP_S
    digest = hmac.new(_secret_bytes(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**TOTP_DIGITS).zfill(TOTP_DIGITS)


def totp_code(secret: str, now: datetime) -> str:
    """The TOTP code for the stored secret at `now`; BrokerError `totp_secret_invalid` when the
    secret is not base32."""
    try:
        return totp_at(secret, now)
    except (ValueError, binascii.Error):
        raise BrokerError("the stored TOTP secret is not base32", code="totp_secret_invalid") from None


def valid_totp_secret(secret: str) -> bool:
    try:
        _secret_bytes(secret)
    except (ValueError, binascii.Error):
        return False
    return True


@dataclass(frozen=True, slots=True)
class AngelSession:
    """One day's session. Tokens are secrets: never log or show them."""

    client_code: str
    jwt_token: str
    refresh_token: str
    feed_token: str
    expires_at: datetime  # aware UTC

    def __repr__(self) -> str:
        return f"AngelSession(client_code={self.client_code!r}, expires_at={self.expires_at!r})"

    def alive(self, now: datetime) -> bool:
        return now < self.expires_at


def bare_jwt(token: str) -> str:
    """The JWT without the `Bearer ` the SDK puts in front of the one `generateSession` returns."""
    token = token.strip()
    return token[len("Bearer ") :].strip() if token.lower().startswith("bearer ") else token


def session_from_login(conn: Any, *, client_code: str, now: datetime) -> AngelSession:
    """The session the SDK holds after a successful `generateSession`/`generateToken`."""
    jwt = bare_jwt(str(conn.access_token or ""))
    if not jwt:
        raise TokenExpired("Angel One returned no session token", code="login_refused")
    return AngelSession(
        client_code=client_code,
        jwt_token=jwt,
        refresh_token=str(conn.refresh_token or ""),
        feed_token=str(conn.feed_token or ""),
        expires_at=session_expiry(now),
    )
