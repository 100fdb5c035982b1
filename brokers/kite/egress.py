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
- a plain call (no proxy, no environment settings) goes on the origin's own kept-alive
  connections (`Origin`, one per scheme, host, port and TLS settings; made by http.client): the
  same headers, timeout and TLS verification (certifi's bundle, or the CA bundle named), and
  failures raised as the requests exceptions requests would raise, so brokers.kite.errors still
  tells "not sent" (no connection made, or a request target refused) from "unknown" (the request
  may have left); without requests' prepared request, cookie jar, hooks and redirect machinery
  and urllib3's per-request objects (together over half of a `place_order`'s CPU, more under the
  fan-out's threads). The request goes out in one write and the answer is read as http.client
  reads it (interim 1xx skipped; Content-Length, chunked, or to the close), without its
  email-parser headers and per-header checks (about half of what remained: `_read_reply`). A
  connection the server closed while idle is dropped before use, as urllib3 does. A redirect is
  returned to the SDK, not followed: Kite's API does not redirect, and an order is never sent
  twice here.
- calls through a proxy (an account's `proxy_url`, or the environment's) stay on requests and
  urllib3 unchanged (`Session.send`: CONNECT tunnels, proxy authentication).

The SDK stays the only way orders reach Kite: KiteConnect's own `reqsession` is replaced by the
route's session (`KiteConnect.reqsession` is public, and the SDK passes every request through it).
"""

from __future__ import annotations

import gzip
import http.client
import io
import json as jsonlib
import os
import re
import select
import ssl
import threading
import urllib.request
import zlib
from collections.abc import Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any, NamedTuple
from urllib.parse import quote_plus, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import NewConnectionError

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


class _Headers(dict[str, str]):
    """Response headers by lower-cased name: `headers["Content-Type"]` as requests answers it
    (KeyError when absent, which the SDK's callers already treat as a malformed response)."""

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class _TLSConnection(http.client.HTTPConnection):
    """An http.client connection whose socket the origin wraps in TLS itself (after the TCP
    connect, so that a failure to connect is told apart from a failure of the handshake)."""

    default_port = http.client.HTTPS_PORT


class Origin:
    """Kept-alive HTTP/1.1 connections to one origin (scheme, host, port, TLS settings), taken by
    one request at a time. What urllib3's pool does for a plain call, without its per-request
    machinery (retries object, timeout clones, response wrapper): a third of an order's CPU."""

    def __init__(self, scheme: str, host: str, port: int | None, verify: Any) -> None:
        self.host = host
        self.https = scheme == "https"
        self.port = port or (http.client.HTTPS_PORT if self.https else http.client.HTTP_PORT)
        self.context = _tls_context(verify) if self.https else None
        self.opened = 0  # connections made (tests, diagnostics)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def take(self, timeout: float | None) -> http.client.HTTPConnection:
        """An idle connection the server has not closed, else a new one. Failing to make one
        raises what requests raises when nothing was sent (ConnectTimeout, or ConnectionError
        over urllib3's NewConnectionError), or SSLError for the TLS handshake."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if _alive(conn):
                    conn.sock.settimeout(timeout)
                    return conn
                conn.close()
        conn = (_TLSConnection if self.https else http.client.HTTPConnection)(
            self.host, self.port, timeout=timeout
        )
        try:
            conn.connect()  # TCP only (the TLS wrap follows)
        except TimeoutError as exc:
            conn.close()
            raise requests.exceptions.ConnectTimeout(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            conn.close()
            raise requests.exceptions.ConnectionError(
                NewConnectionError(None, f"Failed to establish a new connection: {exc}")  # type: ignore[arg-type]
            ) from exc
        if self.context is not None:
            try:
                conn.sock = self.context.wrap_socket(conn.sock, server_hostname=self.host)
            except ssl.SSLError as exc:
                conn.close()
                raise requests.exceptions.SSLError(exc) from exc
            except OSError as exc:
                conn.close()
                raise requests.exceptions.ConnectionError(exc) from exc
        with self._lock:
            self.opened += 1
        return conn

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < POOL_SIZE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def send(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], timeout: float | None
    ) -> tuple[int, _Headers, bytes, str]:
        """One request and its whole answer (status, headers, decoded body, reason). Once the
        request may have left, every failure is one requests gives for an unknown outcome
        (ReadTimeout, ConnectionError): a write is then looked up by tag, never re-sent."""
        if _BAD_TARGET.search(path):
            raise requests.exceptions.InvalidURL(f"control character or space in the request target {path!r}")
        head = self._head(method, path, headers)
        conn = self.take(timeout)
        sock = conn.sock
        if sock is None:  # take() gives connected ones only
            raise requests.exceptions.ConnectionError(NewConnectionError(None, "no connection made"))  # type: ignore[arg-type]
        try:
            sock.sendall(head + body if body else head)
            reply = _read_reply(sock, method)
        except TimeoutError as exc:
            conn.close()
            raise requests.exceptions.ReadTimeout(f"{self.host}:{self.port} read timed out") from exc
        except Exception as exc:
            conn.close()
            raise requests.exceptions.ConnectionError(exc) from exc
        if reply.will_close:
            conn.close()
        else:
            self.give_back(conn)
        return (
            reply.status,
            reply.headers,
            _decoded(reply.body, reply.headers.get("content-encoding", "")),
            reply.reason,
        )

    def _head(self, method: str, path: str, headers: Mapping[str, str]) -> bytes:
        """The request line and headers, as http.client writes them: a Host header (the port
        only when it is not the scheme's own) and `Accept-Encoding: identity` unless given.
        The caller has checked every header (requests' `check_header_validity`: no CR or LF)."""
        lines = [f"{method} {path} HTTP/1.1"]
        names = {name.lower() for name in headers}
        if "host" not in names:
            host = f"[{self.host}]" if ":" in self.host else self.host
            default = http.client.HTTPS_PORT if self.https else http.client.HTTP_PORT
            lines.append(f"Host: {host}" if self.port == default else f"Host: {host}:{self.port}")
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: identity")
        lines.extend(
            f"{name}: {value.decode('latin-1') if isinstance(value, bytes) else value}"
            for name, value in headers.items()
        )
        try:
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError as exc:  # nothing sent yet
            raise requests.exceptions.InvalidHeader(f"a header cannot be written as latin-1: {exc}") from None


# A request target is printable ASCII (http.client refuses controls and spaces, and cannot
# write anything beyond ASCII): anything else is refused before it is sent.
_BAD_TARGET = re.compile("[^\x21-\x7e]")
_MAX_LINE = 65536
_MAX_HEADERS = 100
_MAX_BODY = 1 << 30  # no answer of Kite's comes near (the instruments dump is tens of MB)


class _Reply(NamedTuple):
    status: int
    reason: str
    headers: _Headers
    body: bytes
    will_close: bool


def _read_reply(sock: Any, method: str) -> _Reply:
    """Read one HTTP/1.1 answer off the socket: what http.client's HTTPResponse reads (interim
    1xx answers skipped; the body by Content-Length, chunked, or to the connection's close;
    none for HEAD, 204 and 304), without its email-parser headers (a third of its CPU). Raises
    http.client's exceptions for a malformed or cut-short answer."""
    reader: io.BufferedReader = sock.makefile("rb")
    try:
        while True:
            version, status, reason = _status_line(reader)
            headers = _header_lines(reader)
            if not (100 <= status < 200) or status == 101:
                break
        if status == 101:  # the connection speaks something else now: never kept
            return _Reply(status, reason, headers, b"", True)
        connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        if method == "HEAD" or status in (204, 304):
            return _Reply(status, reason, headers, b"", not keep_alive)
        codings = [t.strip().lower() for t in headers.get("transfer-encoding", "").split(",") if t.strip()]
        if codings:
            # RFC 9112 §6.3: a transfer coding overrides any Content-Length; the body is chunked
            # or runs to the close. A length sent with it is not trusted: not kept either way.
            if codings[-1] == "chunked":
                body = _chunked(reader)
                return _Reply(status, reason, headers, body, not keep_alive or "content-length" in headers)
            return _Reply(status, reason, headers, reader.read(), True)
        length = headers.get("content-length")
        if length is None:
            return _Reply(status, reason, headers, reader.read(), True)  # to the close
        try:
            size = int(length)
        except ValueError:
            raise http.client.HTTPException(f"bad Content-Length {length!r}") from None
        if not 0 <= size <= _MAX_BODY:
            raise http.client.HTTPException(f"bad Content-Length {length!r}")
        body = reader.read(size)
        if len(body) < size:
            raise http.client.IncompleteRead(body, size - len(body))
        return _Reply(status, reason, headers, body, not keep_alive)
    finally:
        reader.close()


def _line(reader: io.BufferedReader, what: str) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise http.client.LineTooLong(what)
    return line


def _status_line(reader: io.BufferedReader) -> tuple[str, int, str]:
    line = _line(reader, "status line")
    if not line:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    version, _, rest = line.decode("iso-8859-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not (code.isascii() and code.isdigit()):
        raise http.client.BadStatusLine(line.decode("iso-8859-1", errors="replace"))
    return version, int(code), reason.strip()


def _header_lines(reader: io.BufferedReader) -> _Headers:
    found = _Headers()
    last = ""
    for _ in range(_MAX_HEADERS + 1):
        line = _line(reader, "header line")
        if line in (b"\r\n", b"\n", b""):
            return found
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and last:  # an obsolete folded continuation
            found[last] = f"{found[last]} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        if not colon:
            raise http.client.HTTPException(f"malformed header line {text!r}")
        last = name.strip().lower()
        value = value.strip()
        found[last] = f"{found[last]}, {value}" if last in found else value
    raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")


def _chunked(reader: io.BufferedReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = _line(reader, "chunk size").split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise http.client.IncompleteRead(b"".join(parts)) from None
        if size == 0:
            break
        if size > _MAX_BODY:
            raise http.client.HTTPException(f"chunk of {size} bytes")
        part = reader.read(size)
        if len(part) < size or reader.read(2) != b"\r\n":
            raise http.client.IncompleteRead(b"".join(parts) + part)
        parts.append(part)
    while _line(reader, "trailer line") not in (b"\r\n", b"\n", b""):
        pass  # trailers: not used
    return b"".join(parts)


def _alive(conn: http.client.HTTPConnection) -> bool:
    """False when the server closed the idle connection (or sent something unasked): readable."""
    if conn.sock is None:
        return False
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return not poller.poll(0)


def _tls_context(verify: Any) -> ssl.SSLContext:
    """The TLS settings requests would use: the CA bundle requests ships (certifi) by default,
    a CA bundle file or directory when `verify` names one, no verification when it is False."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context(cafile=DEFAULT_CA_BUNDLE_PATH)


def _decoded(data: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity" or not data:
        return data
    try:
        if encoding == "gzip":
            return gzip.decompress(data)
        if encoding == "deflate":
            try:
                return zlib.decompress(data)
            except zlib.error:
                return zlib.decompress(data, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    except (OSError, EOFError, zlib.error) as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    raise requests.exceptions.ContentDecodingError(f"unsupported content encoding {encoding!r}")


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
        self._origins: dict[tuple[str, str, Any], Origin] = {}
        self._origins_lock = threading.Lock()

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

    def _origin(self, url: str, verify: Any) -> tuple[Origin, str]:
        """The kept-alive connections of `url`'s origin (one per scheme, host, port and TLS
        settings), and the path to request there."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, verify if isinstance(verify, bool | str) else repr(verify))
        origin = self._origins.get(key)
        if origin is None:
            try:
                port = parts.port
            except ValueError as exc:
                raise requests.exceptions.InvalidURL(f"bad port in {url!r}") from exc
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise requests.exceptions.InvalidURL(f"not an http(s) URL: {url!r}")
            with self._origins_lock:
                origin = self._origins.get(key)
                if origin is None:
                    origin = self._origins[key] = Origin(parts.scheme, parts.hostname, port, verify)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return origin, path

    def origins(self) -> list[Origin]:
        """The origins this session has connections to (tests, diagnostics)."""
        with self._origins_lock:
            return list(self._origins.values())

    def close(self) -> None:
        with self._origins_lock:
            origins, self._origins = list(self._origins.values()), {}
        for origin in origins:
            origin.close()
        super().close()

    def _direct(
        self,
        method: str,
        url: str,
        headers: CaseInsensitiveDict[str],
        body: bytes | str | None,
        timeout: Any,
        verify: Any,
    ) -> DirectResponse:
        """One request on the origin's kept-alive connections (`Origin`): what `Session.send`
        does for a plain call (same headers, timeout, TLS verification, and failures raised as
        requests raises them, so brokers.kite.errors still tells "not sent" from "unknown"),
        without requests' and urllib3's per-request machinery. A redirect is returned, not
        followed (Kite's API does not redirect; a write is never sent twice by this layer)."""
        for name, value in headers.items():
            requests.utils.check_header_validity((name, value))
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None:
            headers["Content-Length"] = str(len(body))
        elif method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
        origin, path = self._origin(url, verify)
        status, found, content, reason = origin.send(method, path, body, dict(headers), timeout)
        return DirectResponse(status, found, content, url, reason)


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
