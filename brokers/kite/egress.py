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
- no cookies are kept: the session is shared between accounts, and Kite's API sets none.

The SDK stays the only way orders reach Kite: KiteConnect's own `reqsession` is replaced by the
route's session (`KiteConnect.reqsession` is public, and the SDK passes every request through it).
"""

from __future__ import annotations

import json as jsonlib
import os
import threading
import urllib.request
from collections.abc import Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict

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


class LeanSession(requests.Session):
    """A `requests.Session` whose `request()` skips what a route without environment settings
    does not need. `requests.Session.request` merges every setting through runtime checks against
    typing Protocols (`SupportsItems`, `SupportsRead`: about a dozen per call, slow on Python
    3.11) and, with `trust_env`, re-reads the environment; the SDK calls with plain dicts, so the
    query string and form body are encoded here (as requests would: lists as repeated keys) and
    the prepared request goes to `Session.send` as ever (adapters, pools, timeouts, redirects).
    With `trust_env` on, or cookies, files, auth, hooks, streaming or a client certificate in
    play, it is `requests.Session.request` unchanged."""

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
    ) -> requests.Response:
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
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        body: bytes | str | None = None
        if json is not None:
            body = jsonlib.dumps(json, allow_nan=False).encode("utf-8")
            merged.setdefault("Content-Type", "application/json")
        elif data:
            body = urlencode(data, doseq=True)
            merged.setdefault("Content-Type", "application/x-www-form-urlencoded")
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper(), url=url, headers=merged, data=body, params="", hooks=default_hooks()
        )
        if verify is None or (verify is True and isinstance(self.verify, str)):
            verify = self.verify  # the CA bundle the session was given
        return self.send(
            prepared,
            timeout=timeout,
            allow_redirects=allow_redirects,
            proxies={**self.proxies, **(proxies or {})},
            stream=False,
            verify=verify,
            cert=None,
        )


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
