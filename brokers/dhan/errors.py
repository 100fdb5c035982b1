"""What Dhan answers, translated into brokers.errors (docs/dhan.md §Errors).

The SDK never raises. Every failure is `{'status': 'failure', 'remarks': ...}`:

- `remarks` a dict (`error_code`, `error_type`, `error_message`): Dhan answered with its error
  body (`{errorType, errorCode: "DH-9xx", errorMessage}`): a refusal, nothing was done (except
  DH-908/909/910, Dhan's own failures: for a write nobody knows whether the order exists);
- `remarks` a string: the SDK caught an exception (timeout, connection, unreadable body). For a
  write whose request may have reached Dhan that is OutcomeUnknown, never "not placed": the caller
  looks the order up by its correlation id. Only an exception certain to have happened before the
  request left (brokers.dhan.sdk keeps it) is BrokerUnavailable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    InputRejected,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    TokenExpired,
)

TOKEN_CODES = frozenset({"DH-901"})  # invalid or expired client id / access token
RATE_LIMIT_CODES = frozenset({"DH-904"})
BAD_IP_CODES = frozenset({"DH-911"})  # the order write came from an IP not registered for the client
INPUT_CODES = frozenset({"DH-905"})
DATA_CODES = frozenset({"DH-907"})  # "no data present" (an unknown order or correlation id)
SERVER_CODES = frozenset({"DH-908", "DH-909", "DH-910"})
ORDER_CODE = "DH-906"  # documented "order error"; measured live answering an expired token too
MAX_MESSAGE_CHARS = 300
MALFORMED = (TypeError, KeyError, ValueError, AttributeError, IndexError, ArithmeticError)
_NOT_SENT = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def succeeded(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("status") == "success"


def remarks_code(body: Any) -> str:
    remarks = body.get("remarks") if isinstance(body, Mapping) else None
    if isinstance(remarks, Mapping):
        return str(remarks.get("error_code") or "").strip().upper()
    return ""


def sent_nothing(exc: BaseException | None) -> bool:
    """True when requests failed before the request could reach the server."""
    if exc is None:
        return False
    if isinstance(exc, _NOT_SENT):
        return True
    if isinstance(exc, requests.exceptions.ProxyError):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        seen: set[int] = set()
        stack: list[object] = [exc]
        while stack:
            item = stack.pop()
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, NewConnectionError):
                return True
            if isinstance(item, BaseException):
                stack.extend(item.args)
                stack.extend(x for x in (item.__cause__, item.__context__) if x is not None)
            reason = getattr(item, "reason", None)
            if reason is not None:
                stack.append(reason)
    return False


def failure_error(
    body: Any,
    *,
    write: bool,
    cause: BaseException | None = None,
    http_status: int | None = None,
    secrets: Iterable[str] = (),
) -> BrokerError:
    """The error for an SDK answer that is not `status: success`. `cause` is the exception the SDK
    swallowed (brokers.dhan.sdk.RecordingSession), when there was one."""
    secrets = tuple(secrets)
    unknown = OutcomeUnknown if write else BrokerUnavailable
    if not isinstance(body, Mapping):
        return unknown(f"unreadable answer from Dhan ({type(body).__name__})")
    remarks = body.get("remarks")
    if not isinstance(remarks, Mapping):
        text = redact(str(remarks or "no remarks"), secrets)
        if sent_nothing(cause):
            return BrokerUnavailable(f"not sent: {text}")
        kind = type(cause).__name__ if cause is not None else "unreadable answer"
        return unknown(f"{kind}: {text}", http_status=http_status)
    code = str(remarks.get("error_code") or "").strip().upper()
    message = redact(str(remarks.get("error_message") or "no message"), secrets)
    detail = f"{code or 'no error code'}: {message}"
    if code in TOKEN_CODES or (code == ORDER_CODE and "token" in message.lower()):
        return TokenExpired(detail, code="token_expired", http_status=http_status)
    if code in RATE_LIMIT_CODES:
        return RateLimited(f"Dhan refused the request (rate limit): {detail}", http_status=http_status)
    if code in BAD_IP_CODES:
        return BrokerError(
            f"Dhan refused the request from this IP (static IP not registered for the client): {detail}",
            code="ip_not_allowed",
            http_status=http_status,
        )
    if code in INPUT_CODES:
        return InputRejected(detail, http_status=http_status)
    if code in DATA_CODES:
        return InputRejected(detail, code="not_found", http_status=http_status)
    if code in SERVER_CODES or not code:
        return unknown(detail, http_status=http_status)
    return OrderRejected(detail, http_status=http_status)
