"""Translate what the Kite SDK raises into brokers.errors (kite/API.md §2, §6.7).

The rule that matters: a write whose request may have reached Kite and whose answer we did not
get (timeout, reset, 5xx, garbled body) is `OutcomeUnknown`, never "not placed"; the caller looks
the order up by its tag before sending again. Only failures certain to have happened before the
request left (connection refused, DNS, connect timeout, bad URL) count as `BrokerUnavailable` for
a write.

Message policy: the server's message is kept (it says why an order was refused), with every
secret this client knows replaced by `***`, and cut to a bounded length.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import requests
from kiteconnect import exceptions as kex
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
from brokers.simcreds import is_loopback_url, is_simulator_credential

# The SDK's own crashes on malformed bodies: TypeError for an error body without error_type,
# KeyError('content-type') for a response without Content-Type (API.md §2.2); our parsers raise the
# same kinds plus ValueError/ArithmeticError on bad numbers and timestamps.
MALFORMED = (TypeError, KeyError, ValueError, AttributeError, IndexError, ArithmeticError)

# Errors that the requests library raises before any byte of the request is sent.
_NOT_SENT = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
)

# Kite's message after 25 modifications of one order (API.md §3; fixtures/handmade). The
# error_type quoted on the forum is NetworkException and the HTTP status is unknown, so it is
# recognised by its text.
MAX_MODIFICATIONS_TEXT = "maximum allowed order modifications exceeded"
MAX_MODIFICATIONS_CODE = "max_modifications"

MAX_MESSAGE_CHARS = 300


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-trivial secret replaced by `***`, cut to MAX_MESSAGE_CHARS."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def _sent_nothing(exc: requests.RequestException) -> bool:
    """True when requests failed before the request could reach the server."""
    if isinstance(exc, _NOT_SENT):
        return True
    if isinstance(exc, requests.exceptions.ProxyError):
        return False  # the proxy may have forwarded the request before failing
    if isinstance(exc, requests.exceptions.ConnectionError):
        # requests wraps urllib3's MaxRetryError, whose `reason` is the NewConnectionError
        # (refused, unreachable, DNS) when the TCP connection was never made.
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


def translate(exc: BaseException, *, write: bool, secrets: Iterable[str] = ()) -> BrokerError:
    """The brokers.errors exception for `exc`, raised by a Kite SDK call.

    `write` is True for calls that change broker state (place, modify, cancel).
    """
    secrets = tuple(secrets)

    def msg(text: str) -> str:
        return redact(text, secrets)

    if isinstance(exc, kex.KiteException):
        status = int(exc.code) if isinstance(exc.code, int) else None
        text = msg(str(exc))
        kind = type(exc).__name__
        detail = f"{kind} (HTTP {status}): {text}"
        if MAX_MODIFICATIONS_TEXT in text.lower():
            # Permanent for this order: the engine must cancel and place a new one.
            return OrderRejected(detail, code=MAX_MODIFICATIONS_CODE, http_status=status)
        if isinstance(exc, kex.TokenException):
            return TokenExpired(detail, http_status=status)
        if isinstance(exc, kex.InputException | kex.PermissionException):
            return InputRejected(detail, http_status=status)
        if status == 429:
            return RateLimited(detail, http_status=status)
        if isinstance(exc, kex.NetworkException | kex.DataException) or status is None or status >= 500:
            # Kite could not reach its OMS or answered garbage: the write may or may not exist.
            return (OutcomeUnknown if write else BrokerUnavailable)(detail, http_status=status)
        # OrderException, and GeneralException wrapping MarginException / HoldingException /
        # UserException, with a 4xx status: Kite refused the request.
        return OrderRejected(detail, http_status=status)

    if isinstance(exc, requests.RequestException):
        text = msg(f"{type(exc).__name__}: {exc}")
        if _sent_nothing(exc):
            return BrokerUnavailable(f"not sent: {text}")
        return (OutcomeUnknown if write else BrokerUnavailable)(text)

    if isinstance(exc, MALFORMED):
        text = msg(f"malformed response ({type(exc).__name__}: {exc})")
        return (OutcomeUnknown if write else BrokerUnavailable)(text)

    raise TypeError(f"not a Kite SDK failure: {type(exc).__name__}") from exc


def simulator_refusal(*, root: str, credentials: Iterable[str]) -> BrokerError | None:
    """The refusal to send credentials issued by the Kite simulator to `root`, unless `root` is
    on this machine (where the simulator runs); None when they may go there."""
    if not any(is_simulator_credential(value) for value in credentials if value) or is_loopback_url(root):
        return None
    parts = urlsplit(root)
    where = f"{parts.scheme}://{parts.hostname}" if parts.hostname else "a non-local address"
    return BrokerError(
        f"these Kite credentials were issued by the Kite simulator; refusing to send them to {where}. "
        "Point KITE_API_ROOT at the simulator on this machine (http://127.0.0.1:8001 under "
        "`make run KITE=sim`), or link the account again with real Kite credentials",
        code="simulator_credentials",
    )
