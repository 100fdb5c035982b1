"""Requests, responses and route calls of the simulator, independent of the HTTP server that carries them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from lab.kite_sim.auth import Session

if TYPE_CHECKING:
    from lab.kite_sim.server import KiteSim

JSON = "application/json"
CSV = "text/csv"
HTML = "text/html; charset=utf-8"
RATE_LIMIT_BODY = {"status": "error", "message": "Too many requests", "error_type": "NetworkException"}


class KiteError(Exception):
    """An error answer in Kite's shape: HTTP status, `error_type` and message."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def input_error(message: str) -> KiteError:
    return KiteError(400, "InputException", message)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @cached_property
    def form(self) -> dict[str, list[str]]:
        """The form-encoded body (POST and PUT, API.md §2)."""
        try:
            text = self.body.decode()
        except UnicodeDecodeError:
            raise input_error("The request body is not valid UTF-8.") from None
        return parse_qs(text, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        """A parameter from the form body, else from the query string (first value)."""
        values = self.form.get(name) or self.query.get(name)
        return values[0] if values else None

    def required(self, name: str) -> str:
        """A parameter that must be there and not blank (else Kite's 400 `Missing `name``)."""
        value = self.param(name)
        if value is None or value.strip() == "":
            raise input_error(f"Missing `{name}`.")
        return value.strip()

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise input_error("The request body is not valid JSON.") from None


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def ok(cls, data: Any) -> Response:
        return cls.json_body({"status": "success", "data": data})

    @classmethod
    def json_body(cls, payload: Any, status: int = 200) -> Response:
        return cls(status=status, body=json.dumps(payload).encode())

    @classmethod
    def error(cls, status: int, error_type: str, message: str) -> Response:
        body = {"status": "error", "message": message, "error_type": error_type, "data": None}
        return cls.json_body(body, status)

    @classmethod
    def rate_limited(cls) -> Response:
        return cls.json_body(RATE_LIMIT_BODY, 429)

    @classmethod
    def csv(cls, text: str) -> Response:
        return cls(body=text.encode(), content_type=CSV)

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status=status, body=text.encode(), content_type=HTML)

    @classmethod
    def redirect(cls, location: str) -> Response:
        return cls(status=302, content_type=HTML, headers=(("Location", location),))

    def data(self) -> Any:
        """The decoded JSON body (tests and in-process callers)."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Call:
    """One request to a route handler: the simulator, the request, the caller's session (None on
    routes without auth) and the path arguments."""

    sim: KiteSim
    request: Request
    session: Session | None
    args: dict[str, str] = field(default_factory=dict)

    @property
    def caller(self) -> Session:
        """The caller's session (403 on a route that was reached without one)."""
        if self.session is None:
            raise KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        return self.session

    @property
    def user_id(self) -> str:
        return self.caller.user_id


Handler = Callable[[Call], Response]
