"""Kite's daily login (kite/API.md §1): the login URL, and the request-token exchange on the SDK.

The browser goes to `login_url(...)`; after a login Kite sends it to the app's registered redirect URL
with `request_token=...&status=success`; the server exchanges that token once, within minutes,
for the day's access token (`exchange_request_token`). Nothing here touches the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from brokers.errors import BrokerError
from brokers.kite.errors import MALFORMED, simulator_refusal, translate
from brokers.kite.parse import ist_to_utc
from brokers.simcreds import is_simulator_credential

DEFAULT_LOGIN_URL = "https://kite.zerodha.com/connect/login"
DEFAULT_TIMEOUT_S = 7.0


@dataclass(frozen=True, slots=True)
class SessionResult:
    """The day's session for one Kite user. `access_token` is a secret: never log or show it."""

    access_token: str
    user_id: str
    login_time: datetime | None  # aware UTC (Kite sends IST wall-clock time)

    def __repr__(self) -> str:  # never show the token
        return f"SessionResult(user_id={self.user_id!r}, login_time={self.login_time!r})"


def login_url(
    api_key: str, *, root: str = DEFAULT_LOGIN_URL, redirect_params: Mapping[str, str] | None = None
) -> str:
    """Kite's login page for `api_key` (`<root>?v=3&api_key=...`).

    `redirect_params` come back, unchanged, as query parameters of the redirect to our callback.
    """
    query: dict[str, str] = {"v": "3", "api_key": api_key}
    if redirect_params:
        query["redirect_params"] = urlencode(dict(redirect_params))
    return f"{root}?{urlencode(query)}"


def exchange_request_token(
    *,
    api_key: str,
    api_secret: str,
    request_token: str,
    root: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    proxy_url: str = "",
) -> SessionResult:
    """Exchange a one-time `request_token` for the day's access token (`POST /session/token`).

    The SDK sends checksum = sha256(api_key + request_token + api_secret). Raises a
    brokers.errors.BrokerError (TokenExpired for a used or stale request token, InputRejected for a
    wrong checksum, BrokerUnavailable when Kite cannot be reached or answers garbage, code
    `simulator_credentials` for the simulator's api key or secret sent to a root off this machine).
    """
    refusal = simulator_refusal(root=root, credentials=(api_key, api_secret))
    if refusal is not None:
        raise refusal
    simulated = is_simulator_credential(api_key)
    proxies = {"http": proxy_url, "https": proxy_url} if proxy_url and not simulated else None
    kite = KiteConnect(api_key, root=root, timeout=timeout, proxies=proxies)
    if simulated:
        kite.reqsession.trust_env = False  # the simulator's key goes straight to it, never via a proxy
    secrets = (api_secret, request_token, proxy_url)
    try:
        data = kite.generate_session(request_token, api_secret=api_secret)
        access_token = str(data["access_token"])
        user_id = str(data["user_id"]).strip().upper()
        login_time = ist_to_utc(data.get("login_time"))
    except (kex.KiteException, requests.RequestException, *MALFORMED) as exc:
        error = translate(exc, write=False, secrets=secrets)
        raise error from None  # the SDK's exception may quote the request; do not chain it
    if not access_token or not user_id:
        raise BrokerError("Kite returned a session without an access token or user id")
    return SessionResult(access_token=access_token, user_id=user_id, login_time=login_time)


__all__ = ["DEFAULT_LOGIN_URL", "SessionResult", "exchange_request_token", "login_url"]
