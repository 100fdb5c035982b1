"""Angel One's payloads (the `data` of its envelopes) as brokers.types values.

Numbers come as strings or numbers and are read as Decimal; times are IST wall-clock
(`20-Oct-2020 13:10:59`) and become aware UTC; an empty book or position list is `data: null`.
Instruments are named by the engine's keys through the scrip master; a row the master does not
know keeps Angel's own symbol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from brokers.angel import vocab
from brokers.angel.scrip import ScripMaster
from brokers.types import (
    Funds,
    InstrumentKey,
    MarginEstimate,
    Order,
    OrderType,
    Position,
    Product,
    SegmentFunds,
    Side,
    Validity,
)

IST = ZoneInfo("Asia/Kolkata")
ZERO = Decimal("0")


def decimal(value: Any) -> Decimal:
    """A money or price field; blank, None and "-1" placeholders read as they are written."""
    if value is None or isinstance(value, bool):
        return ZERO
    text = str(value).replace(" ", "").replace(",", "").strip()
    if not text:
        return ZERO
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {str(value)[:20]!r}") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    return number


def integer(value: Any) -> int:
    return int(decimal(value))


def ist_time(value: Any) -> datetime | None:
    text = str(value or "").strip()
    if not text:
        return None
    for fmt in ("%d-%b-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d-%b-%Y %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=IST).astimezone(UTC)
        except ValueError:
            continue
    return None


def rows(data: Any) -> list[Mapping[str, Any]]:
    if data is None or data == "" or data == "null":
        return []
    if not isinstance(data, list):
        raise TypeError(f"expected a list, got {type(data).__name__}")
    return [row for row in data if isinstance(row, Mapping)]


def parse_funds(data: Any) -> Funds:
    """`getRMS`: used = `utiliseddebits`, available = `net` (docs/angel.md §Funds)."""
    if not isinstance(data, Mapping):
        raise TypeError("RMS data is not an object")
    used = decimal(data.get("utiliseddebits"))
    available = decimal(data.get("net"))
    segment = SegmentFunds(segment="all", enabled=True, used=used, available=available)
    return Funds(used=used, available=available, segments=(segment,))


def _key(row: Mapping[str, Any], master: ScripMaster) -> InstrumentKey:
    exchange = str(row.get("exchange") or "").upper()
    symbol = str(row.get("tradingsymbol") or "").upper()
    scrip = master.by_angel(exchange=exchange, token=str(row.get("symboltoken") or ""), symbol=symbol)
    return scrip.key if scrip is not None else InstrumentKey(exchange, symbol)


def parse_order(row: Mapping[str, Any], master: ScripMaster) -> Order:
    key = _key(row, master)
    quantity = integer(row.get("quantity"))
    filled = integer(row.get("filledshares"))
    status = vocab.status_from_angel(str(row.get("orderstatus") or row.get("status") or ""))
    cancelled = integer(row.get("cancelsize"))
    pending = 0 if status.is_final else max(0, integer(row.get("unfilledshares")) or quantity - filled)
    placed = ist_time(row.get("exchtime")) or ist_time(row.get("updatetime"))
    return Order(
        order_id=str(row.get("orderid") or ""),
        exchange=key.exchange,
        tradingsymbol=key.tradingsymbol,
        side=Side(str(row.get("transactiontype") or "").upper()),
        order_type=vocab.ORDER_TYPE_FROM_ANGEL[str(row.get("ordertype") or "").upper()],
        product=vocab.PRODUCT_FROM_ANGEL.get(str(row.get("producttype") or "").upper(), Product.NRML),
        quantity=quantity,
        status=status,
        price=decimal(row.get("price")),
        trigger_price=decimal(row.get("triggerprice")),
        filled_quantity=filled,
        average_price=decimal(row.get("averageprice")),
        pending_quantity=pending,
        cancelled_quantity=cancelled,
        validity=vocab.VALIDITY_FROM_ANGEL.get(str(row.get("duration") or "DAY").upper(), Validity.DAY),
        variety=vocab.NEUTRAL_VARIETY,
        tag=str(row.get("ordertag") or ""),
        status_message=str(row.get("text") or ""),
        placed_at=placed,
        updated_at=ist_time(row.get("exchorderupdatetime")) or ist_time(row.get("updatetime")) or placed,
        parent_order_id=str(row.get("parentorderid") or "") or None,
    )


def parse_orders(data: Any, master: ScripMaster) -> list[Order]:
    return [parse_order(row, master) for row in rows(data)]


def parse_position(row: Mapping[str, Any], master: ScripMaster) -> Position:
    key = _key(row, master)
    quantity = integer(row.get("netqty"))
    if quantity > 0:
        average = decimal(row.get("buyavgprice") or row.get("totalbuyavgprice"))
    elif quantity < 0:
        average = decimal(row.get("sellavgprice") or row.get("totalsellavgprice"))
    else:
        average = ZERO
    return Position(
        exchange=key.exchange,
        tradingsymbol=key.tradingsymbol,
        product=vocab.PRODUCT_FROM_ANGEL.get(str(row.get("producttype") or "").upper(), Product.NRML),
        quantity=quantity,
        average_price=average,
        last_price=decimal(row.get("ltp")),
        realised_pnl=decimal(row.get("realised")),
        unrealised_pnl=decimal(row.get("unrealised")),
    )


def parse_positions(data: Any, master: ScripMaster) -> list[Position]:
    return [parse_position(row, master) for row in rows(data)]


def parse_margin(data: Any) -> MarginEstimate:
    """`margin/v1/batch`: `totalMarginRequired` after the basket's hedge benefit."""
    if not isinstance(data, Mapping):
        raise TypeError("margin data is not an object")
    parts = data.get("marginComponents") or {}
    if not isinstance(parts, Mapping):
        raise TypeError("marginComponents is not an object")
    return MarginEstimate(
        total=decimal(data.get("totalMarginRequired")),
        span=decimal(parts.get("spanMargin")),
        option_premium=decimal(parts.get("totOptionsPremium")),
    )


def parse_ltp(data: Any, wanted: Mapping[tuple[str, str], InstrumentKey]) -> dict[InstrumentKey, Decimal]:
    """`market/v1/quote` in LTP mode: `{fetched: [{exchange, symbolToken, ltp}], unfetched: [...]}`."""
    if not isinstance(data, Mapping):
        raise TypeError("quote data is not an object")
    prices: dict[InstrumentKey, Decimal] = {}
    for row in rows(data.get("fetched")):
        key = wanted.get((str(row.get("exchange") or "").upper(), str(row.get("symbolToken") or "")))
        if key is not None:
            prices[key] = decimal(row.get("ltp"))
    return prices


def order_id_of(data: Any) -> str:
    if not isinstance(data, Mapping):
        raise TypeError("order answer without data")
    order_id = str(data.get("orderid") or "").strip()
    if not order_id:
        raise KeyError("orderid")
    return order_id


def margin_positions(
    legs: Sequence[tuple[str, str, OrderType, Side, Product, int, Decimal]],
) -> dict[str, Any]:
    """The body of `margin/v1/batch` for (exchange, token, order type, side, product, qty, price) legs."""
    return {
        "positions": [
            {
                "exchange": exchange,
                "qty": quantity,
                "price": float(price),
                "productType": vocab.PRODUCT_TO_ANGEL[product],
                "token": token,
                "tradeType": side.value,
                "orderType": vocab.ORDER_TYPE_TO_ANGEL[order_type],
            }
            for exchange, token, order_type, side, product, quantity, price in legs
        ]
    }
