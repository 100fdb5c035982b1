"""Dhan's sessions (docs/dhan.md §Login): a 24-hour access token, made on Dhan's web page or by the
server itself with the client id, PIN and the current TOTP code (`generateAccessToken`, headless),
where the client stored its PIN and TOTP secret. The TOTP code is RFC 6238 as for Angel One."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from brokers.angel.session import totp_code, valid_totp_secret
from brokers.capabilities import DHAN
from brokers.errors import TokenExpired

IST = ZoneInfo("Asia/Kolkata")

__all__ = ["DhanSession", "session_expiry", "session_from_login", "totp_code", "valid_totp_secret"]


def session_expiry(obtained_at: datetime) -> datetime:
    """24 hours after the token was made (capability record), aware UTC."""
    expiry = DHAN.session.token_expiry(obtained_at)
    assert expiry is not None
    return expiry


@dataclass(frozen=True, slots=True)
class DhanSession:
    """One access token. A secret: never log or show it."""

    client_id: str
    access_token: str
    expires_at: datetime  # aware UTC

    def __repr__(self) -> str:
        return f"DhanSession(client_id={self.client_id!r}, expires_at={self.expires_at!r})"

    @property
    def jwt_token(self) -> str:
        """The token under the name accounts.services.headless reads."""
        return self.access_token

    def alive(self, now: datetime) -> bool:
        return now < self.expires_at


def _expiry_time(text: Any) -> datetime | None:
    """`expiryTime` (`2026-01-01T00:00:00.000`, IST wall clock) as aware UTC."""
    raw = str(text or "").strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=IST).astimezone(UTC)
        except ValueError:
            continue
    return None


def session_from_login(body: Any, *, client_id: str, now: datetime) -> DhanSession:
    """The session in `generateAccessToken`'s answer; its `expiryTime`, else 24 hours from now."""
    if not isinstance(body, Mapping):
        raise TokenExpired("Dhan returned no session", code="login_refused")
    token = str(body.get("accessToken") or "").strip()
    if not token:
        raise TokenExpired("Dhan returned no access token", code="login_refused")
    answered = str(body.get("dhanClientId") or "").strip()
    if answered and answered != client_id:
        raise TokenExpired(f"logged in as {answered}, not {client_id}", code="wrong_client")
    expiry = _expiry_time(body.get("expiryTime")) or session_expiry(now)
    return DhanSession(client_id=client_id, access_token=token, expires_at=min(expiry, session_expiry(now)))
