"""Alice Blue's vendor login (docs/alice.md §Login).

The client logs in at `https://ant.aliceblueonline.com/?appcode=<app code>`; Alice Blue redirects to
the app's URL with `authCode` and `userId`. `POST /open-api/od/v1/vendor/getUserDetails` with
`checkSum` = SHA-256(userId + authCode + apiSecret) answers `{stat: "Ok", clientId, userSession}`.
The `userSession` (a JWT; its lifetime is not documented: the docs' sample lives 60 days) is what
every later call carries, as `Authorization: Bearer <userSession>`; the account keeps it as its
access token until Alice Blue says EC087 (session expired).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

LOGIN_URL = "https://ant.aliceblueonline.com/?appcode="


def login_url(app_code: str, base: str = LOGIN_URL) -> str:
    """Where the client logs in to hand this app an auth code."""
    return f"{base}{app_code}"


@dataclass(frozen=True, slots=True)
class AliceSession:
    """A vendor session. The token is a secret: never log or show it."""

    user_id: str
    user_session: str
    expires_at: datetime | None  # from the JWT's `exp` when it has one (aware UTC)

    def __repr__(self) -> str:
        return f"AliceSession(user_id={self.user_id!r}, expires_at={self.expires_at!r})"


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` claim of a JWT (not verified: only to show when it will die), else None."""
    parts = token.split(".")
    if len(parts) < 2:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload.get("exp") if isinstance(payload, dict) else None
        return datetime.fromtimestamp(int(exp), tz=UTC) if exp else None
    except (ValueError, TypeError, OverflowError):
        return None
