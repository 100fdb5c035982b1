"""What the Angel One, Dhan and Alice Blue adapters' error mapping shares about the wire itself:
which answers are malformed, whether a failed request never left this machine (so a write is
known not to have been placed), and messages with the account's secrets taken out.

Each adapter keeps its own codes, envelopes and mapping (brokers/<broker>/errors.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import requests
from urllib3.exceptions import NewConnectionError

# What a reply the adapter cannot read raises while it is parsed.
MALFORMED = (TypeError, KeyError, ValueError, AttributeError, IndexError, ArithmeticError)
MAX_MESSAGE_CHARS = 300
# requests' failures that happen before anything is sent.
_NOT_SENT = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret of 4 characters or more as `***`, at most MAX_MESSAGE_CHARS long."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


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
