"""The one import of the Ant-A3 TradeHub SDK, made safe to use (docs/alice.md, "What the SDK does").

ant-a3-tradehub-sdk-production 1.1.7 builds Alice Blue's `/open-api/od/v1/` requests well, but:

- its transport (`RequestHandler.request`) never raises and never shows the answer: any non-200,
  timeout, connection error or non-JSON body becomes `{'stat': 'Not_ok', 'emsg': ...}` (the body
  and its EC code are lost, even when the order was placed), with a fixed 20 s timeout and no
  proxies. `Hub` (a TradeHub) replaces the handler its `_init_session` returns with `Transport`:
  our own `requests.Session` (the account's proxy, trust_env off), our timeout, and every answer
  recorded as an `Exchange` (HTTP status, JSON body or the failure), so the adapter can tell a
  refusal from an unknown outcome. The SDK's routes and payload building are used as they are;
- a failed `get_session_id()` wipes the live session: `Hub.vendor_session` keeps it on failure;
- it `print()`s the checksum, the login answer with `userSession`, and order payloads: every module
  of its packages gets a module-level `print` that drops the text (thread-safe, unlike swapping
  `sys.stdout`), so nothing of it reaches standard output or the logs;
- it installs top-level packages named `config` and `utility` (this project has neither).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any

import requests

_IMPORT_LOCK = threading.Lock()
SDK_PACKAGES = ("TradeMaster", "config", "utility")


def _silent_print(*args: Any, **kwargs: Any) -> None:
    """The SDK's print(): its text (checksum, userSession, payloads) goes nowhere."""


def silence_sdk() -> int:
    """Give every loaded module of the SDK's packages the silent print; returns how many."""
    count = 0
    for name, module in list(sys.modules.items()):
        if module is not None and name.split(".")[0] in SDK_PACKAGES:
            module.print = _silent_print  # type: ignore[attr-defined]
            count += 1
    return count


def _import_sdk() -> type[Any]:
    with _IMPORT_LOCK:
        # No type stubs in the SDK: it is handled as Any, its use pinned by the tests.
        from TradeMaster.TradeSync import TradeHub  # type: ignore[import-untyped]

        silence_sdk()
    return TradeHub  # type: ignore[no-any-return]


TradeHub: type[Any] = _import_sdk()


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and what came back: the HTTP status and JSON body, or the failure."""

    method: str
    url: str
    status: int | None = None
    body: Any = None
    error: BaseException | None = None  # a requests failure (nothing or no answer came back)
    unreadable: bool = False  # an answer came back but was not JSON

    def __repr__(self) -> str:  # never show the body (it may hold a session)
        return f"Exchange({self.method} {self.url.rsplit('/', 2)[-1]!r}, status={self.status})"


class Transport:
    """What `TradeHub._init_session` returns instead of the SDK's RequestHandler: same `request`
    signature, our session and timeout, every exchange recorded in `last`."""

    def __init__(self, *, session: requests.Session, authorization: str, timeout: float) -> None:
        self.session = session
        self.headers = {"Authorization": authorization} if authorization else {}
        self.timeout = timeout
        self.last: Exchange | None = None

    def request(self, url: str, method: str, data: Any = None, params: Any = None) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers, "timeout": self.timeout}
        if isinstance(params, dict):
            kwargs["params"] = params
        if data is not None:
            kwargs["json"] = data
        method = method.upper()
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            self.last = Exchange(method, url, error=exc)
            return {"stat": "Not_ok", "emsg": "transport failure", "encKey": None}
        try:
            body = response.json()
        except ValueError:
            self.last = Exchange(method, url, status=response.status_code, unreadable=True)
            return {"stat": "Not_ok", "emsg": f"{response.status_code} - unreadable answer", "encKey": None}
        self.last = Exchange(method, url, status=response.status_code, body=body)
        return body


class Hub(TradeHub):  # type: ignore[misc]
    """A TradeHub whose requests go through `Transport` (recorded in `last`)."""

    def __init__(
        self,
        *,
        user_id: str,
        base_url: str,
        timeout: float,
        session: requests.Session,
        auth_code: str = "",
        secret_key: str = "",
        session_id: str = "",
    ) -> None:
        super().__init__(
            user_id=str(user_id),  # an int user id crashes the SDK (`.upper()`)
            auth_code=auth_code,
            secret_key=secret_key,
            base_url=base_url if base_url.endswith("/") else base_url + "/",  # without it: "Failed to parse"
            session_id=session_id or None,
        )
        self.http = session
        self.timeout = timeout
        self.last: Exchange | None = None
        self._wss_url = ""  # the SDK's own order feed (hard-coded production host) is never used

    def _init_session(self) -> Transport:
        transport = _RecordingTransport(
            self, session=self.http, authorization=self.sessionAuthorization(), timeout=self.timeout
        )
        return transport

    @property
    def session_id(self) -> str:
        return str(self._session_id or "")

    @session_id.setter
    def session_id(self, value: str) -> None:
        self._session_id = value or None

    def vendor_session(self, *, auth_code: str, secret_key: str) -> Any:
        """`get_session_id()` with the checksum of user id, auth code and secret; the session held
        before is kept when it fails (the SDK's own call wipes it)."""
        before = self._session_id
        self._auth_code = auth_code
        self._secret_key = secret_key
        self.last = None
        try:
            answer = self.get_session_id()
        finally:
            self._auth_code = ""
            self._secret_key = ""
        if not (isinstance(answer, dict) and answer.get("userSession")):
            self._session_id = before
        return answer

    def post(self, endpoint_key: str, data: Any) -> Any:
        """The SDK's own POST to one of its routes with a body it does not build itself (the basket
        margin with several legs and the documented `triggerPrice`)."""
        return self._init_post(_endpoints_key=endpoint_key, data=data)

    def get(self, endpoint_key: str) -> Any:
        return self._init_get(_endpoints_key=endpoint_key)


class _RecordingTransport(Transport):
    def __init__(self, hub: Hub, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hub = hub

    def request(self, url: str, method: str, data: Any = None, params: Any = None) -> Any:
        answer = super().request(url, method, data=data, params=params)
        self._hub.last = self.last
        return answer


def checksum(user_id: str, auth_code: str, secret: str) -> str:
    """Alice Blue's login checksum: SHA-256 of user id + auth code + api secret (hex)."""
    import hashlib

    return hashlib.sha256(f"{user_id}{auth_code}{secret}".encode()).hexdigest()


__all__ = ["Exchange", "Hub", "TradeHub", "Transport", "checksum", "silence_sdk"]
