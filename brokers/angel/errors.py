"""What Angel One answers, translated into brokers.errors (docs/angel.md §Errors).

The SDK never looks at the HTTP status. A refusal comes back as a plain dict, either
`{status: false, message, errorcode: "AB..."}` or, for token errors, `{success: false, errorCode:
"AG800x", message}`; a body that is not JSON (every rate-limit breach: HTTP 403, plain text) raises
the SDK's DataException; timeouts and connection failures are the `requests` library's own.

The rule that matters: a write whose request may have reached Angel and whose answer we did not
get or could not read is `OutcomeUnknown`, never "not placed"; the caller looks the order up by its
tag. Only failures certain to have happened before the request left count as BrokerUnavailable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import requests

from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    InputRejected,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    TokenExpired,
)
from brokers.wire_errors import MALFORMED as MALFORMED
from brokers.wire_errors import redact as redact
from brokers.wire_errors import sent_nothing

# The session is dead: log in again (headless if the client stored a PIN and TOTP secret).
TOKEN_CODES = frozenset({"AG8001", "AG8002", "AG8003", "AB1010", "AB1011", "AB8050", "AB8051"})
# Angel's side failed; for a write nobody knows whether the order exists.
SERVER_CODES = frozenset({"AB1004", "AB1007", "AB2000", "AB2001"})
# The request itself was wrong: nothing was placed and sending it again will not help.
INPUT_CODES = frozenset({"AB1008", "AB1009", "AB1012", "AB1013", "AB1014", "AB1016", "AB1018", "AB4008"})
RATE_LIMIT_TEXT = "exceeding access rate"


def succeeded(body: Any) -> bool:
    """Angel's success envelope: `status` true (a bool, or the string the docs show)."""
    if not isinstance(body, Mapping):
        return False
    status = body.get("status", body.get("success"))
    return status is True or (isinstance(status, str) and status.strip().lower() == "true")


def error_code(body: Any) -> str:
    if not isinstance(body, Mapping):
        return ""
    return str(body.get("errorcode") or body.get("errorCode") or "").strip().upper()


def envelope_error(body: Any, *, write: bool, secrets: Iterable[str] = ()) -> BrokerError:
    """The error for an answer that is not a success envelope."""
    if not isinstance(body, Mapping):
        text = f"unreadable answer from Angel One ({type(body).__name__})"
        return (OutcomeUnknown if write else BrokerUnavailable)(text)
    code = error_code(body)
    message = redact(str(body.get("message") or "no message"), secrets)
    detail = f"{code or 'no error code'}: {message}"
    if code in TOKEN_CODES:
        return TokenExpired(detail, code="token_expired")
    if code in SERVER_CODES or not code:
        return (OutcomeUnknown if write else BrokerUnavailable)(detail)
    if code in INPUT_CODES:
        return InputRejected(detail)
    return OrderRejected(detail)


def translate(
    exc: BaseException,
    *,
    write: bool,
    sdk_errors: tuple[type[BaseException], ...],
    secrets: Iterable[str] = (),
) -> BrokerError:
    """The brokers.errors exception for what a SmartAPI SDK call raised."""
    secrets = tuple(secrets)
    if isinstance(exc, sdk_errors):
        text = redact(str(exc), secrets)
        if RATE_LIMIT_TEXT in text.lower():
            return RateLimited(f"Angel One refused the request (rate limit): {text}", http_status=403)
        return (OutcomeUnknown if write else BrokerUnavailable)(f"{type(exc).__name__}: {text}")
    if isinstance(exc, requests.RequestException):
        text = redact(f"{type(exc).__name__}: {exc}", secrets)
        if sent_nothing(exc):
            return BrokerUnavailable(f"not sent: {text}")
        return (OutcomeUnknown if write else BrokerUnavailable)(text)
    if isinstance(exc, MALFORMED):
        text = redact(f"malformed response ({type(exc).__name__}: {exc})", secrets)
        return (OutcomeUnknown if write else BrokerUnavailable)(text)
    raise TypeError(f"not a SmartAPI failure: {type(exc).__name__}") from exc
