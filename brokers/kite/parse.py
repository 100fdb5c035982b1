"""Kite payloads (as returned by the kiteconnect SDK) to brokers.types, and requests back.

Pure functions, no I/O; the requests we send are built in brokers.kite.params. Conventions (kite/API.md):
- numbers arrive as JSON floats; they become Decimal through `str()` and are rounded to
  `DECIMAL_PLACES` places to drop float noise (`99725.05000000002` → `99725.05`);
- timestamps arrive IST-naive (datetime from the SDK, or `YYYY-MM-DD HH:MM:SS` strings) and
  leave aware UTC;
- malformed payloads raise KeyError / TypeError / ValueError (the caller maps them);
- rows that are valid Kite data but outside our model (cover/bracket-order products, unknown
  order types) raise `Unsupported`; list parsers skip such rows with a warning.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from brokers.types import (
    Funds,
    Instrument,
    InstrumentKey,
    InstrumentType,
    MarginEstimate,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Product,
    SegmentFunds,
    Side,
    Validity,
)

logger = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
DECIMAL_PLACES = 4  # enough for CDS ticks (0.0025); float noise sits far below
_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)

Payload = Mapping[str, Any]
E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")


class Unsupported(ValueError):
    """A well-formed Kite row this system does not model (skipped by the list parsers)."""


# --- scalars -----------------------------------------------------------------------------------


def to_decimal(value: object) -> Decimal:
    """A JSON number (float, int, numeric str) as a Decimal without float noise. None → 0."""
    if value is None or value == "":
        return Decimal("0")
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if not isinstance(value, int | float | str | Decimal):
        raise TypeError(f"not a number: {type(value).__name__}")
    number = Decimal(str(value)).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)
    if number == 0:
        return Decimal("0")  # also turns Kite's "-0" into 0
    if number == number.to_integral_value():
        return number.quantize(Decimal(1))
    return number.normalize()


def to_int(value: object) -> int:
    """A JSON integer (Kite sends quantities as ints; tolerate 1.0 and "1"). None → 0."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise TypeError("a boolean is not a quantity")
    if isinstance(value, int):
        return value
    if isinstance(value, float | str | Decimal):
        number = Decimal(str(value))
        if number != number.to_integral_value():
            raise ValueError(f"not a whole number: {value!r}")
        return int(number)
    raise TypeError(f"not a quantity: {type(value).__name__}")


def ist_to_utc(value: object) -> datetime | None:
    """An IST wall-clock time (naive datetime or `YYYY-MM-DD HH:MM:SS`) as aware UTC. None/"" → None.

    An aware datetime is converted as is.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    elif isinstance(value, datetime):
        moment = value
    else:
        raise TypeError(f"not a timestamp: {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    return moment.astimezone(UTC)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _enum(cls: type[E], value: object, field: str) -> E:
    try:
        return cls(value)
    except ValueError:
        raise Unsupported(f"{field}={value!r} is not a supported {cls.__name__}") from None


# --- funds -------------------------------------------------------------------------------------


def parse_segment_funds(segment: str, payload: Payload) -> SegmentFunds:
    """One segment of `GET /user/margins`: used = utilised.debits, available = net (API.md §5)."""
    return SegmentFunds(
        segment=segment,
        enabled=bool(payload.get("enabled", True)),
        used=to_decimal(payload["utilised"]["debits"]),
        available=to_decimal(payload["net"]),
    )


def parse_funds(payload: Payload) -> Funds:
    """`GET /user/margins` data (`{"equity": {...}, "commodity": {...}}`), summed over enabled segments."""
    order = {"equity": 0, "commodity": 1}
    names = sorted(payload, key=lambda name: (order.get(name, 2), name))
    return Funds.from_segments(tuple(parse_segment_funds(name, payload[name]) for name in names))


# --- orders ------------------------------------------------------------------------------------

# Kite's status vocabulary (API.md §6.4) → ours. PENDING means "in transit inside Kite: wait, do
# not modify" (a modify there fails with "being processed"); OPEN means "live at the exchange".
STATUS_MAP: dict[str, OrderStatus] = {
    "PUT ORDER REQ RECEIVED": OrderStatus.PENDING,
    "VALIDATION PENDING": OrderStatus.PENDING,
    "OPEN PENDING": OrderStatus.PENDING,
    "AMO REQ RECEIVED": OrderStatus.PENDING,
    "MODIFY VALIDATION PENDING": OrderStatus.PENDING,
    "MODIFY PENDING": OrderStatus.PENDING,
    "CANCEL PENDING": OrderStatus.PENDING,
    "TRIGGER PENDING": OrderStatus.TRIGGER_PENDING,
    "OPEN": OrderStatus.OPEN,
    "MODIFIED": OrderStatus.OPEN,  # history marker: the modification went through, the order is live
    "NOT MODIFIED": OrderStatus.OPEN,  # history marker: the modification failed, the order is live
    "UPDATE": OrderStatus.OPEN,  # postback / WS: modified or partly filled
    "COMPLETE": OrderStatus.COMPLETE,
    "CANCELLED": OrderStatus.CANCELLED,
    "CANCELLED AMO": OrderStatus.CANCELLED,
    "LAPSED": OrderStatus.CANCELLED,  # expired without a fill (Java constants)
    "REJECTED": OrderStatus.REJECTED,
}


def parse_status(value: object) -> OrderStatus:
    """Kite order status → OrderStatus. An unknown status is PENDING (not final: keep watching)."""
    text = _text(value).strip().upper()
    status = STATUS_MAP.get(text)
    if status is None:
        logger.warning("unknown Kite order status %r treated as PENDING", text)
        return OrderStatus.PENDING
    return status


def parse_order(payload: Payload) -> Order:
    """One order from `GET /orders` or `GET /orders/{id}` (SDK-formatted or raw)."""
    placed_at = ist_to_utc(payload.get("order_timestamp"))
    updated_at = ist_to_utc(payload.get("exchange_update_timestamp")) or placed_at
    parent = payload.get("parent_order_id")
    return Order(
        order_id=str(payload["order_id"]),
        exchange=str(payload["exchange"]),
        tradingsymbol=str(payload["tradingsymbol"]),
        side=_enum(Side, payload["transaction_type"], "transaction_type"),
        order_type=_enum(OrderType, payload["order_type"], "order_type"),
        product=_enum(Product, payload["product"], "product"),
        quantity=to_int(payload["quantity"]),
        status=parse_status(payload["status"]),
        price=to_decimal(payload.get("price")),
        trigger_price=to_decimal(payload.get("trigger_price")),
        filled_quantity=to_int(payload.get("filled_quantity")),
        average_price=to_decimal(payload.get("average_price")),
        pending_quantity=to_int(payload.get("pending_quantity")),
        cancelled_quantity=to_int(payload.get("cancelled_quantity")),
        validity=_enum(Validity, payload.get("validity") or "DAY", "validity"),
        variety=_text(payload.get("variety")) or "regular",
        tag=_text(payload.get("tag")),
        status_message=_text(payload.get("status_message")),
        placed_at=placed_at,
        updated_at=updated_at,
        parent_order_id=str(parent) if parent else None,
    )


def _parse_rows(rows: Iterable[Payload], parse: Callable[[Payload], T], what: str) -> list[T]:
    parsed: list[T] = []
    for row in rows:
        try:
            parsed.append(parse(row))
        except Unsupported as exc:
            logger.warning(
                "skipped Kite %s %s:%s: %s", what, row.get("exchange"), row.get("tradingsymbol"), exc
            )
    return parsed


def parse_orders(rows: Iterable[Payload]) -> list[Order]:
    """`GET /orders` data; rows we do not model (e.g. product CO/BO) are skipped with a warning."""
    return _parse_rows(rows, parse_order, "order")


def parse_order_id(payload: object) -> str:
    """The order id from a place/modify/cancel answer (the SDK already unwraps it to a str)."""
    if isinstance(payload, Mapping):
        payload = payload["order_id"]
    if not isinstance(payload, str | int) or isinstance(payload, bool) or payload == "":
        raise TypeError(f"no order id in the response ({type(payload).__name__})")
    return str(payload)


# --- positions ---------------------------------------------------------------------------------


def parse_position(payload: Payload) -> Position:
    """One row of `positions()["net"]`; quantity is signed (long > 0, short < 0)."""
    return Position(
        exchange=str(payload["exchange"]),
        tradingsymbol=str(payload["tradingsymbol"]),
        product=_enum(Product, payload["product"], "product"),
        quantity=to_int(payload["quantity"]),
        average_price=to_decimal(payload.get("average_price")),
        last_price=to_decimal(payload.get("last_price")),
        realised_pnl=to_decimal(payload.get("realised")),
        unrealised_pnl=to_decimal(payload.get("unrealised")),
    )


def parse_positions(payload: Payload) -> list[Position]:
    """`GET /portfolio/positions` data → the net book (closed positions stay, with quantity 0)."""
    return _parse_rows(payload["net"], parse_position, "position")


# --- instruments -------------------------------------------------------------------------------

# Last trading time on expiry day, by exchange (IST). Approximate, for "is it expired yet";
# always on the same calendar day in UTC, so `expiry.date()` is the expiry date.
_EXPIRY_CLOSE = {"MCX": time(23, 30), "CDS": time(12, 30), "BCD": time(12, 30)}
_DEFAULT_EXPIRY_CLOSE = time(15, 30)


def parse_expiry(value: object, exchange: str) -> datetime | None:
    """The dump's expiry (a date from the SDK, or `YYYY-MM-DD`, or "") as the aware UTC close time."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str):
        day = date.fromisoformat(value.strip())
    else:
        raise TypeError(f"not an expiry: {type(value).__name__}")
    close = _EXPIRY_CLOSE.get(exchange, _DEFAULT_EXPIRY_CLOSE)
    return datetime.combine(day, close, tzinfo=IST).astimezone(UTC)


def parse_instrument(row: Payload) -> Instrument:
    """One row of the instruments dump as parsed by `KiteConnect._parse_instruments`."""
    exchange = str(row["exchange"])
    segment = str(row["segment"])
    if segment == "INDICES":
        instrument_type = InstrumentType.INDEX
    else:
        instrument_type = _enum(InstrumentType, row["instrument_type"], "instrument_type")
    name = _text(row.get("name"))
    derivative = instrument_type in (InstrumentType.FUT, InstrumentType.CE, InstrumentType.PE)
    return Instrument(
        exchange=exchange,
        tradingsymbol=str(row["tradingsymbol"]),
        instrument_token=to_int(row["instrument_token"]),
        name=name,
        instrument_type=instrument_type,
        segment=segment,
        lot_size=to_int(row["lot_size"]),
        tick_size=to_decimal(row["tick_size"]),
        expiry=parse_expiry(row.get("expiry"), exchange),
        strike=to_decimal(row.get("strike")),
        underlying=name if derivative else "",
        last_price=to_decimal(row.get("last_price")),
    )


def parse_instruments(rows: Iterable[Payload]) -> list[Instrument]:
    """The instruments dump; rows of unknown instrument types are skipped (logged once, counted)."""
    parsed: list[Instrument] = []
    skipped = 0
    for row in rows:
        try:
            parsed.append(parse_instrument(row))
        except Unsupported:
            skipped += 1
    if skipped:
        logger.info("skipped %d Kite instrument rows of unsupported types", skipped)
    return parsed


# --- quotes ------------------------------------------------------------------------------------


def parse_ltp(payload: Payload, wanted: Sequence[InstrumentKey] = ()) -> dict[InstrumentKey, Decimal]:
    """`GET /quote/ltp` data keyed `"EX:SYMBOL"`. Instruments Kite left out are simply absent.

    Keys found in `wanted` come back as those very keys; others are split at the first colon.
    """
    by_text = {str(key): key for key in wanted}
    prices: dict[InstrumentKey, Decimal] = {}
    for text, quote in payload.items():
        key = by_text.get(text)
        if key is None:
            exchange, _, symbol = text.partition(":")
            key = InstrumentKey(exchange, symbol)
        prices[key] = to_decimal(quote["last_price"])
    return prices


# --- margins -----------------------------------------------------------------------------------


def _margin(payload: Payload, per_order: tuple[Decimal, ...] = ()) -> MarginEstimate:
    return MarginEstimate(
        total=to_decimal(payload["total"]),
        span=to_decimal(payload.get("span")),
        exposure=to_decimal(payload.get("exposure")),
        option_premium=to_decimal(payload.get("option_premium")),
        per_order=per_order,
    )


def parse_order_margins(rows: Sequence[Payload]) -> list[MarginEstimate]:
    """`POST /margins/orders` data: one estimate per order, `total` is what the order blocks."""
    return [_margin(row) for row in rows]


def parse_basket_margin(payload: Payload) -> MarginEstimate:
    """`POST /margins/basket` data: `final` (after hedge benefit), with each order's own total."""
    per_order = tuple(to_decimal(row["total"]) for row in payload.get("orders") or ())
    return _margin(payload["final"], per_order)
