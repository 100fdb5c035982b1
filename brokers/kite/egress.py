"""HTTP sessions for the SDK, one per egress route, shared by every account that leaves that way.

A fan-out sends one order per child: with one `requests.Session` per KiteConnect each child opens
its own connection on its first order, and every call re-reads the proxy and netrc settings from
the environment (`trust_env`), which is over half the CPU of a `place_order` (issue 17). Here:

- one session per route `(root, proxy_url)`: accounts with an explicit `proxy_url` get a session
  (and a connection pool) of their own per proxy, the rest share one per root; the pool keeps
  `POOL_SIZE` connections alive across calls and ticks;
- `trust_env` is off unless the environment names a proxy for the root (read once, when the
  route's session is made): the per-call re-read goes; a CA bundle named by REQUESTS_CA_BUNDLE or
  CURL_CA_BUNDLE is still used (set as the session's `verify`);
- no cookies are kept: the session is shared between accounts, and Kite's API sets none;
- a plain call (no proxy, no environment settings) goes straight to the adapter's urllib3 pool
  (`LeanSession._direct`): same pool, TLS settings, retries, timeout, and failures mapped to the
  exceptions requests would raise, so brokers.kite.errors still tells "not sent" from "unknown";
  without requests' prepared request, cookie jar, hooks and redirect machinery (they were a third
  of a `place_order`'s CPU, and more under the fan-out's threads). A redirect is returned to the
  SDK, not followed: Kite's API does not redirect, and an order is never sent twice by this layer.

The SDK stays the only way orders reach Kite: KiteConnect's own `reqsession` is replaced by the
route's session (`KiteConnect.reqsession` is public, and the SDK passes every request through it).
"""

from __future__ import annotations

import json as jsonlib
import os
import re
import threading
import urllib.request
from collections.abc import Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    HTTPError,
    InvalidHeader,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.util import Timeout

POOL_SIZE = 256  # connections kept per route (the fan-out's threads share them)

_lock = threading.Lock()
_sessions: dict[tuple[str, str, bool], requests.Session] = {}


def environment_proxy(root: str) -> str:
    """The proxy the environment names for `root` (HTTP(S)_PROXY, ALL_PROXY, minus NO_PROXY), or ""."""
    host = urlsplit(root).hostname or ""
    proxies = urllib.request.getproxies()
    if not proxies or (host and urllib.request.proxy_bypass(host)):
        return ""
    scheme = urlsplit(root).scheme or "https"
    return str(proxies.get(scheme) or proxies.get("all") or "")


_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*\Z")  # what quote_plus leaves as it is


def form_encode(data: Mapping[Any, Any]) -> str:
    """`urlencode(data, doseq=True)`, byte for byte, quoting only what needs it: an order's
    twenty-odd fields are mostly plain words and numbers, and quoting each was a tenth of a
    place_order's CPU."""
    parts: list[str] = []
    for key, value in data.items():
        if type(key) is str and type(value) in (str, int, float):
            text = value if type(value) is str else str(value)
            name = key if _UNQUOTED.match(key) else quote_plus(key)
            parts.append(f"{name}={text if _UNQUOTED.match(text) else quote_plus(text)}")
        else:
            parts.append(urlencode({key: value}, doseq=True))
    return "&".join(part for part in parts if part)


class DirectResponse:
    """What the SDK reads of a response (`status_code`, `headers`, `content`, `text`, `json()`),
    without `requests.Response`'s cookie jar, hooks and lazy body."""

    __slots__ = ("content", "headers", "reason", "status_code", "url")

    def __init__(self, status_code: int, headers: Any, content: bytes, url: str, reason: str | None) -> None:
        self.status_code = status_code
        self.headers = headers  # urllib3's HTTPHeaderDict: case-insensitive, like requests'
        self.content = content
        self.url = url
        self.reason = reason

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self, **kwargs: Any) -> Any:
        return jsonlib.loads(self.content, **kwargs)


def _requests_error(exc: Exception) -> Exception:
    """The requests exception for a urllib3 failure, as `requests.adapters.HTTPAdapter.send`
    maps it (brokers.kite.errors judges from it whether the request may have left)."""
    if isinstance(exc, ClosedPoolError):
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return requests.exceptions.ConnectTimeout(exc)
        if isinstance(reason, ResponseError):
            return requests.exceptions.RetryError(exc)
        if isinstance(reason, ProxyError):
            return requests.exceptions.ProxyError(exc)
        if isinstance(reason, SSLError):
            return requests.exceptions.SSLError(exc)
        return requests.exceptions.ConnectionError(exc)
    if isinstance(exc, ProxyError):
        return requests.exceptions.ProxyError(exc)
    if isinstance(exc, SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, InvalidHeader):
        return requests.exceptions.InvalidHeader(exc)
    if isinstance(exc, ProtocolError | OSError):
        return requests.exceptions.ConnectionError(exc)
    return exc


class LeanSession(requests.Session):
    """A `requests.Session` whose `request()` skips what a route without environment settings
    does not need. `requests.Session.request` merges every setting through runtime checks against
    typing Protocols (`SupportsItems`, `SupportsRead`: about a dozen per call, slow on Python
    3.11) and, with `trust_env`, re-reads the environment; the SDK calls with plain dicts, so the
    query string and form body are encoded here (as requests would: lists as repeated keys) and
    the prepared request goes to `Session.send` as ever (adapters, pools, timeouts, redirects).
    With `trust_env` on, or cookies, files, auth, hooks, streaming or a client certificate in
    play, it is `requests.Session.request` unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._pools: dict[tuple[str, str, Any], HTTPConnectionPool] = {}

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: dict[str, str] | None = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response | DirectResponse:
        plain = (
            not self.trust_env
            and not (cookies or files or auth or hooks or stream or cert)
            and not (self.auth or self.params or self.cert or self.stream)
            and isinstance(params, dict | type(None))
            and isinstance(data, dict | type(None))
        )
        if not plain:
            return super().request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                cookies=cookies,
                files=files,
                auth=auth,
                timeout=timeout,
                allow_redirects=allow_redirects,
                proxies=proxies,
                hooks=hooks,
                stream=stream,
                verify=verify,
                cert=cert,
                json=json,
            )
        merged: CaseInsensitiveDict[str] = CaseInsensitiveDict(self.headers)
        for name, value in (headers or {}).items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        if params:
            url += ("&" if "?" in url else "?") + form_encode(params)
        body: bytes | str | None = None
        if json is not None:
            body = jsonlib.dumps(json, allow_nan=False).encode("utf-8")
            merged.setdefault("Content-Type", "application/json")
        elif data:
            body = form_encode(data)
            merged.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if verify is None or (verify is True and isinstance(self.verify, str)):
            verify = self.verify  # the CA bundle the session was given
        if not self.proxies and not any((proxies or {}).values()) and not isinstance(timeout, tuple):
            return self._direct(method.upper(), url, merged, body, timeout, verify)
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper(), url=url, headers=merged, data=body, params="", hooks=default_hooks()
        )
        return self.send(
            prepared,
            timeout=timeout,
            allow_redirects=allow_redirects,
            proxies={**self.proxies, **(proxies or {})},
            stream=False,
            verify=verify,
            cert=None,
        )

    def _pool(self, url: str, verify: Any) -> tuple[HTTPConnectionPool, str]:
        """The connection pool of `url`'s origin, as the mounted adapter would pick it (its TLS
        settings included), looked up once per origin; and the path to request there."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, verify if isinstance(verify, bool | str) else repr(verify))
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # evicted and closed by the pool manager
            adapter = self.get_adapter(url)
            if not isinstance(adapter, HTTPAdapter):
                raise TypeError(f"no direct path through {type(adapter).__name__}")
            probe = requests.PreparedRequest()
            probe.url = url
            try:
                pool = adapter.get_connection_with_tls_context(probe, verify)
            except LocationValueError as exc:
                raise requests.exceptions.InvalidURL(exc) from None
            adapter.cert_verify(pool, url, verify, None)
            self._pools[key] = pool
        return pool, path

    def _direct(
        self,
        method: str,
        url: str,
        headers: CaseInsensitiveDict[str],
        body: bytes | str | None,
        timeout: Any,
        verify: Any,
    ) -> DirectResponse:
        """One request straight on the adapter's urllib3 pool: what `Session.send` and
        `HTTPAdapter.send` do for a plain call (same pool, TLS settings, retries, timeout and
        error mapping), without the prepared request, cookies, hooks and redirect machinery. A
        redirect is returned, not followed (Kite's API does not redirect; a write is never sent
        twice by this layer)."""
        for name, value in headers.items():
            requests.utils.check_header_validity((name, value))
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None:
            headers["Content-Length"] = str(len(body))
        elif method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
        pool, path = self._pool(url, verify)
        try:
            reply = pool.urlopen(
                method,
                path,
                body=body,
                headers=dict(headers),
                redirect=False,
                assert_same_host=False,
                preload_content=True,
                decode_content=True,
                retries=self.get_adapter(url).max_retries,  # type: ignore[attr-defined]
                timeout=Timeout(connect=timeout, read=timeout),
            )
        except (ClosedPoolError, MaxRetryError, HTTPError, OSError) as exc:
            raise _requests_error(exc) from exc
        return DirectResponse(reply.status, reply.headers, reply.data, url, reply.reason)


def _new_session(root: str, proxy_url: str, direct: bool) -> requests.Session:
    session = LeanSession()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, pool_block=False)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # shared: keep no cookies
    if proxy_url:
        session.proxies = {"http": proxy_url, "https": proxy_url}
        session.trust_env = False  # the account's proxy, not the environment's
    elif direct or not environment_proxy(root):
        session.trust_env = False
    if not session.trust_env:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
    return session


def session_for(root: str, proxy_url: str = "", *, direct: bool = False) -> requests.Session:
    """The shared session of the egress route (root, proxy_url), made on first use. `direct`:
    never through a proxy, whatever the environment says (the simulator's credentials)."""
    key = (root, "" if direct else proxy_url, direct)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = _new_session(root, key[1], direct)
        return session


def routes() -> int:
    """How many egress routes have a session (tests, diagnostics)."""
    with _lock:
        return len(_sessions)


def reset() -> None:
    """Close and forget every session (tests; a process that changed its environment)."""
    with _lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()
