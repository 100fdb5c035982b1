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

TOKEN_CODES = frozenset({"DH-901"})  # invalid or expired client id / access token
RATE_LIMIT_CODES = frozenset({"DH-904"})
BAD_IP_CODES = frozenset({"DH-911"})  # the order write came from an IP not registered for the client
INPUT_CODES = frozenset({"DH-905"})
DATA_CODES = frozenset({"DH-907"})  # "no data present" (an unknown order or correlation id)
SERVER_CODES = frozenset({"DH-908", "DH-909", "DH-910"})
ORDER_CODE = "DH-906"  # documented "order error"; measured live answering an expired token too


def succeeded(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("status") == "success"


def remarks_code(body: Any) -> str:
    remarks = body.get("remarks") if isinstance(body, Mapping) else None
    if isinstance(remarks, Mapping):
        return str(remarks.get("error_code") or "").strip().upper()
    return ""


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
