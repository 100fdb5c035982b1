"""The one import of the dhanhq SDK (2.3.0), made safe to use (docs/dhan.md, "What the SDK does").

dhanhq has habits an engine cannot live with, handled here:

- it never raises: `DhanHTTP._send_request` catches every exception (a timeout after Dhan accepted
  an order included) and returns `{'status': 'failure', 'remarks': str(exc)}`. `connection()` gives
  the SDK a `requests.Session` that remembers the exception before the SDK swallows it, so the
  adapter can tell "never sent" from "sent, answer lost" (brokers.dhan.errors);
- it logs those failures at ERROR (and unreadable bodies at WARNING) on the root logger, with the
  exception text, which can carry a proxy's password or, for the PIN login, the PIN and TOTP in
  the URL: a filter on the root logger drops every record the SDK's own files write;
- the base URL and timeout are class attributes copied into each instance (`DhanHTTP.API_BASE_URL`,
  `HTTP_DEFAULT_TIME_OUT` = 60 s): `connection()` sets the instance's `base_url`, `timeout` and the
  session's proxies; the class attributes are never touched;
- `DhanLogin.generate_token` (PIN + TOTP) calls `requests.post` with no timeout or proxies:
  `dhanhq.auth` gets a `requests` stand-in that adds the caller's timeout and proxies
  (`login_options`), so a dead auth host cannot hang the engine.

The SDK's request building, routes and envelope parsing are used as they are; the tests run them
over HTTP against lab.dhan_sim.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# No type stubs or py.typed in dhanhq: the SDK is handled as Any, its use pinned by the tests.
import dhanhq as _dhanhq  # type: ignore[import-untyped]
import dhanhq.auth as _dhan_auth  # type: ignore[import-untyped]
import requests

_SDK_DIR = os.path.dirname(os.path.abspath(_dhanhq.__file__))


class _DropSdkRecords(logging.Filter):
    """Drops the records the SDK writes on the root logger (they quote exception texts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not os.path.abspath(record.pathname).startswith(_SDK_DIR)


_FILTER = _DropSdkRecords()


def _install_log_filter() -> None:
    root = logging.getLogger()
    if _FILTER not in root.filters:
        root.addFilter(_FILTER)
    for name in ("dhanhq", "websockets"):
        logging.getLogger(name).addFilter(_FILTER)


_install_log_filter()


class RecordingSession(requests.Session):
    """A requests session that keeps the last exception and HTTP status of a call (the SDK swallows
    both). One per connection; calls on a connection are serialised by the adapter."""

    def __init__(self) -> None:
        super().__init__()
        self.last_error: BaseException | None = None
        self.last_status: int | None = None

    def reset(self) -> None:
        self.last_error = None
        self.last_status = None

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response = super().request(*args, **kwargs)
        except BaseException as exc:
            self.last_error = exc
            raise
        self.last_status = response.status_code
        return response


class _AuthRequests:
    """`requests` as dhanhq.auth sees it: the caller's timeout and proxies on every call."""

    exceptions = requests.exceptions

    def __init__(self) -> None:
        self._local = threading.local()

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("timeout", getattr(self._local, "timeout", 10.0))
        kwargs.setdefault("proxies", getattr(self._local, "proxies", None))
        return kwargs

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return requests.post(url, **self._options(kwargs))  # noqa: S113 - _options sets it

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return requests.get(url, **self._options(kwargs))  # noqa: S113 - _options sets it

    @contextmanager
    def options(self, *, timeout: float, proxies: dict[str, str | None] | None) -> Iterator[None]:
        self._local.timeout, self._local.proxies = timeout, proxies
        try:
            yield
        finally:
            self._local.timeout, self._local.proxies = 10.0, None


_AUTH = _AuthRequests()
_dhan_auth.requests = _AUTH


def connection(
    *,
    client_id: str,
    access_token: str,
    base_url: str,
    timeout: float,
    proxies: dict[str, str | None] | None = None,
) -> Any:
    """A `dhanhq.dhanhq` for one account: its own base URL, timeout, proxies and recording session."""
    context = _dhanhq.DhanContext(client_id, access_token)
    http = context.get_dhan_http()
    http.base_url = base_url
    http.timeout = timeout
    session = RecordingSession()
    if proxies is not None:
        session.proxies.update({k: v for k, v in proxies.items() if v})
        session.trust_env = any(proxies.values())  # no environment proxy for the simulator
    http.session = session
    return _dhanhq.dhanhq(context)


def set_token(conn: Any, access_token: str) -> None:
    """Put a new access token into a connection (its headers are built at construction)."""
    http = conn.dhan_http
    http.access_token = access_token
    http.header["access-token"] = access_token


def session_of(conn: Any) -> RecordingSession:
    session: RecordingSession = conn.dhan_http.session
    return session


def generate_token(
    *,
    client_id: str,
    pin: str,
    totp: str,
    auth_root: str,
    timeout: float,
    proxies: dict[str, str | None] | None,
) -> Any:
    """`DhanLogin.generate_token` (POST {auth_root}/app/generateAccessToken) with a timeout. Raises
    what the SDK raises (an Exception for a refusal; requests' own for transport)."""
    login = _dhanhq.DhanLogin(client_id)
    login.AUTH_BASE_URL = auth_root.rstrip("/")
    with _AUTH.options(timeout=timeout, proxies=proxies):
        return login.generate_token(pin, totp)


__all__ = ["RecordingSession", "connection", "generate_token", "session_of", "set_token"]
