"""Kite order postbacks and WebSocket order updates (kite/API.md §11, §12): checksum and parsing.

Pure functions, no I/O. A postback carries no auth header: its checksum,
sha256(order_id + order_timestamp + api_secret) in hex, is the only proof that Kite sent it.
WebSocket order updates carry the same structure (the ticker hands it over unmodified).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from brokers.kite.parse import Unsupported, parse_order
from brokers.types import Order


class InvalidPostback(ValueError):
    """A body that is not a Kite order payload (not JSON, not an object, fields missing)."""


def postback_checksum(*, order_id: str, order_timestamp: str, api_secret: str) -> str:
    """The checksum Kite puts on a postback: hex sha256(order_id + order_timestamp + api_secret)."""
    return hashlib.sha256((order_id + order_timestamp + api_secret).encode("utf-8")).hexdigest()


def _text_field(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def checksum_valid(payload: Mapping[str, Any], *, api_secret: str) -> bool:
    """True when the payload's `checksum` matches (constant-time compare). Missing pieces: False."""
    order_id = _text_field(payload, "order_id")
    order_timestamp = payload.get("order_timestamp")
    given = payload.get("checksum")
    if (
        not api_secret
        or order_id is None
        or not isinstance(order_timestamp, str)
        or not isinstance(given, str)
    ):
        return False
    expected = postback_checksum(order_id=order_id, order_timestamp=order_timestamp, api_secret=api_secret)
    return hmac.compare_digest(expected.encode("ascii"), given.strip().lower().encode("utf-8"))


def decode_postback(body: bytes) -> dict[str, Any]:
    """The JSON object of a postback body (raw JSON, no envelope). Raises InvalidPostback."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPostback("the body is not JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidPostback("the body is not a JSON object")
    return payload


def postback_user_id(payload: Mapping[str, Any]) -> str:
    """The Zerodha user id the update belongs to (upper case). Raises InvalidPostback when absent."""
    user_id = _text_field(payload, "user_id")
    if user_id is None:
        raise InvalidPostback("no user_id")
    return user_id.strip().upper()


def parse_order_update(payload: Mapping[str, Any]) -> Order:
    """A postback or WebSocket order update as a brokers.types.Order.

    Raises InvalidPostback for a malformed payload, brokers.kite.parse.Unsupported (a ValueError)
    for a valid order this system does not model (e.g. a cover order).
    """
    try:
        return parse_order(payload)
    except Unsupported:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidPostback(f"malformed order update ({type(exc).__name__}: {exc})") from exc
