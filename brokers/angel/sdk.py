"""The one import of the SmartAPI SDK, made safe to use (docs/angel.md, "What the SDK does").

smartapi-python 1.5.5 has three habits an engine cannot live with, handled here:

- importing it calls a public "what is my IP" service with no timeout, in the class body (the
  answer is thrown away: the SDK then sends a hard-coded IP). The import runs with `requests.get`
  replaced by one that fails at once, so an offline machine never hangs on it;
- every `SmartConnect()` creates `logs/<date>/app.log` in the working directory and points the
  `logzero` logger at it; that logger writes request headers (the api key and the session's
  `Authorization` header) on errors. `connection()` builds the object without running the SDK's
  constructor (it sets the same attributes) and the `logzero` logger is disabled;
- it calls `requests.request` itself, so the caller's proxies and timeout go in as attributes.

The SDK's request, envelope and route code is used as is (`SmartConnect._request` through its
public methods); the tests run it over HTTP against lab.angel_sim.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import requests

_IMPORT_LOCK = threading.Lock()


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise requests.ConnectionError("the SmartAPI SDK's public-IP lookup is not made (brokers.angel.sdk)")


def _import_sdk() -> tuple[type[Any], Any]:
    import logzero  # type: ignore[import-untyped]

    # The SDK logs through logzero's default logger: request headers (api key, bearer token) on
    # errors, and its own public-IP lookup at import. Silenced before the import.
    logzero.logger.disabled = True
    with _IMPORT_LOCK:
        real_get: Callable[..., Any] = requests.get
        requests.get = _refuse  # only for the SDK's class body, which binds `get` by name
        try:
            # No type stubs or py.typed in smartapi-python / logzero (pyproject's override list is
            # not this module's to change): the SDK is handled as Any, its use pinned by the tests.
            from SmartApi import smartExceptions  # type: ignore[import-untyped]
            from SmartApi.smartConnect import SmartConnect  # type: ignore[import-untyped]
        finally:
            requests.get = real_get
    logging.getLogger("SmartApi.smartConnect").setLevel(logging.WARNING)  # its debug logs quote headers
    return SmartConnect, smartExceptions


SmartConnect: Any
smart_exceptions: Any
SmartConnect, smart_exceptions = _import_sdk()

SDK_ERRORS: tuple[type[BaseException], ...] = (smart_exceptions.SmartAPIException,)


def connection(
    *,
    api_key: str,
    root: str,
    timeout: float,
    proxies: dict[str, str | None] | None = None,
    access_token: str = "",
    refresh_token: str = "",
    user_id: str = "",
) -> Any:
    """A SmartConnect for one account, built without the SDK's constructor (no log folder)."""
    conn: Any = object.__new__(SmartConnect)
    conn.debug = False
    conn.api_key = api_key
    conn.session_expiry_hook = None
    conn.disable_ssl = False
    conn.access_token = access_token or None
    conn.refresh_token = refresh_token or None
    conn.feed_token = None
    conn.userId = user_id or None
    conn.proxies = proxies or {}
    conn.root = root
    conn._rootUrl = root  # individual_order_details reads the class attribute otherwise
    conn.timeout = timeout
    conn.Authorization = None
    conn.clientLocalIP = conn.clientLocalIp
    conn.clientPublicIP = conn.clientPublicIp
    conn.privateKey = api_key
    conn.reqsession = requests
    return conn


__all__ = ["SDK_ERRORS", "SmartConnect", "connection", "smart_exceptions"]
