"""What Alice Blue answers, translated into brokers.errors (docs/alice.md §Errors).

Alice Blue's REST API answers `{status: "Ok", message, result: [...]}`; a refusal is
`{status: "Not_ok", message: "EC…"}` (133 documented EC codes; EC087: the session expired). The
vendor login uses `{stat, emsg}`. The SDK's own transport loses all of it (any non-200, timeout or
non-JSON body becomes `{stat: Not_ok, emsg}`), so the adapter reads `brokers.alice.sdk.Exchange`,
the HTTP status and body as they came, instead.

The rule that matters: a write whose request may have reached Alice Blue and whose answer we did
not get or could not read is `OutcomeUnknown`, never "not placed"; the caller looks the order up by
its tag in the order book. Only failures certain to have happened before the request left count as
BrokerUnavailable.
"""

from __future__ import annotations

import re
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

CODE = re.compile(r"\bEC\d{3}\b")
TOKEN_CODES = frozenset({"EC087"})  # Session Expired
# "No orders / positions / holdings / trades found": an empty list, not a failure.
EMPTY_CODES = frozenset({"EC916", "EC920", "EC922", "EC926"})
# Alice Blue's side failed ("An error occurred", "Failed to place / retrieve ..."): for a write
# nobody knows whether the order exists.
SERVER_CODES = frozenset(
    {
        "EC003",
        "EC912",
        "EC913",
        "EC915",
        "EC917",
        "EC919",
        "EC921",
        "EC923",
        "EC924",
        "EC927",
        "EC935",
        "EC939",
    }
)
# The broker refused the order as such (not the parameters): read-only user, order not modifiable,
# product or order type not allowed, exchange closed to orders.
REJECTED_CODES = frozenset(
    {
        "EC086",
        "EC829",
        "EC830",
        "EC831",
        "EC832",
        "EC837",
        "EC838",
        "EC852",
        "EC855",
        "EC858",
        "EC865",
        "EC993",
    }
)
NOT_FOUND_CODES = frozenset({"EC979", "EC992", "EC994", "EC997", "EC998", "EC999", "EC815"})
RATE_LIMIT_TEXT = ("rate limit", "too many requests")


def succeeded(body: Any) -> bool:
    """Alice Blue's success envelope: `status` (or the login's `stat`) "Ok"."""
    if not isinstance(body, Mapping):
        return False
    status = body.get("status", body.get("stat"))
    return isinstance(status, str) and status.strip().lower() == "ok"


def error_code(body: Any) -> str:
    """The EC code of a refusal (in `message`, `emsg` or the first result row), or ""."""
    if not isinstance(body, Mapping):
        return ""
    texts = [body.get("message"), body.get("emsg"), body.get("errorCode")]
    result = body.get("result")
    if isinstance(result, list) and result and isinstance(result[0], Mapping):
        texts.extend([result[0].get("message"), result[0].get("errorCode")])
    for text in texts:
        found = CODE.search(str(text or ""))
        if found:
            return found.group(0)
    return ""


def body_error(body: Any, *, status: int | None, write: bool, secrets: Iterable[str] = ()) -> BrokerError:
    """The error for an answer (any HTTP status) that is not a success envelope."""
    secrets = tuple(secrets)
    unknown = OutcomeUnknown if write else BrokerUnavailable
    if not isinstance(body, Mapping):
        return unknown(f"unreadable answer from Alice Blue (HTTP {status})", http_status=status)
    code = error_code(body)
    message = redact(str(body.get("message") or body.get("emsg") or "no message"), secrets)
    detail = f"{code or 'no error code'}: {message}" if code not in message else message
    if status == 429 or any(t in message.lower() for t in RATE_LIMIT_TEXT):
        return RateLimited(f"Alice Blue refused the request (rate limit): {detail}", http_status=status)
    if code in TOKEN_CODES or status == 401:
        return TokenExpired(f"Alice Blue session refused: {detail}", code="token_expired", http_status=status)
    if code in SERVER_CODES or not code or (status is not None and status >= 500):
        return unknown(detail, http_status=status)
    if code in NOT_FOUND_CODES:
        return InputRejected(detail, code="order_not_found", http_status=status)
    if code == "EC971":
        return InputRejected(detail, code="tag_invalid", http_status=status)
    if code in REJECTED_CODES:
        return OrderRejected(detail, http_status=status)
    return InputRejected(detail, http_status=status)


def transport_error(exc: BaseException, *, write: bool, secrets: Iterable[str] = ()) -> BrokerError:
    """The error for a request that got no answer (timeout, connection, proxy)."""
    text = redact(f"{type(exc).__name__}: {exc}", tuple(secrets))
    if sent_nothing(exc):
        return BrokerUnavailable(f"not sent: {text}")
    return (OutcomeUnknown if write else BrokerUnavailable)(text)
