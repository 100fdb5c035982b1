"""Dhan's payloads (the SDK's `data`) as brokers.types values.

Numbers come as numbers or strings and are read as Decimal; times are IST wall clock
(`2021-11-24 13:33:03`) and become aware UTC. Instruments are named by the engine's keys through
the security-id master; a row the master does not know keeps Dhan's own symbol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from brokers.dhan import vocab
from brokers.dhan.scrip import ScripMaster
from brokers.types import (
    Funds,
    InstrumentKey,
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

IST = ZoneInfo("Asia/Kolkata")
ZERO = Decimal("0")


def decimal(value: Any) -> Decimal:
    if value is None or isinstance(value, bool):
        return ZERO
    text = str(value).replace(",", "").strip()
    if not text:
        return ZERO
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text[:20]!r}") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    return number


def integer(value: Any) -> int:
    return int(decimal(value))


def ist_time(value: Any) -> datetime | None:
    text = str(value or "").strip()
    if not text or text.startswith("0001"):
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=IST).astimezone(UTC)
        except ValueError:
            continue
    return None


def rows(data: Any) -> list[Mapping[str, Any]]:
    if data is None or data == "":
        return []
    if isinstance(data, Mapping):
        return [data]
    if not isinstance(data, list):
        raise TypeError(f"expected a list, got {type(data).__name__}")
    return [row for row in data if isinstance(row, Mapping)]


def parse_funds(data: Any) -> Funds:
    """`/fundlimit`: used = `utilizedAmount`, available = `availabelBalance` (Dhan's spelling; the
    correct spelling is read too should Dhan fix it)."""
    if not isinstance(data, Mapping):
        raise TypeError("fund limit data is not an object")
    used = decimal(data.get("utilizedAmount"))
    raw = data.get("availabelBalance", data.get("availableBalance"))
    if raw is None:
        raise KeyError("availabelBalance")
    available = decimal(raw)
    segment = SegmentFunds(segment="all", enabled=True, used=used, available=available)
    return Funds(used=used, available=available, segments=(segment,))


def _key(row: Mapping[str, Any], master: ScripMaster) -> InstrumentKey:
    segment = str(row.get("exchangeSegment") or "").upper()
    scrip = master.by_security(segment, str(row.get("securityId") or ""))
    if scrip is not None:
        return scrip.key
    return InstrumentKey(
        vocab.SEGMENT_TO_EXCHANGE.get(segment, segment), str(row.get("tradingSymbol") or "").upper()
    )


def parse_order(row: Mapping[str, Any], master: ScripMaster) -> Order:
    key = _key(row, master)
    order_type = vocab.ORDER_TYPE_FROM_DHAN[str(row.get("orderType") or "").upper()]
    status = vocab.status_from_dhan(str(row.get("orderStatus") or ""), order_type)
    quantity = integer(row.get("quantity"))
    filled = integer(row.get("filledQty"))
    pending = 0 if status.is_final else max(0, integer(row.get("remainingQuantity")) or quantity - filled)
    message = str(row.get("omsErrorDescription") or "")
    return Order(
        order_id=str(row.get("orderId") or ""),
        exchange=key.exchange,
        tradingsymbol=key.tradingsymbol,
        side=Side(str(row.get("transactionType") or "").upper()),
        order_type=order_type,
        product=vocab.PRODUCT_FROM_DHAN.get(str(row.get("productType") or "").upper(), Product.NRML),
        quantity=quantity,
        status=status,
        price=decimal(row.get("price")),
        trigger_price=decimal(row.get("triggerPrice")),
        filled_quantity=filled,
        average_price=decimal(row.get("averageTradedPrice")),
        pending_quantity=pending,
        cancelled_quantity=quantity - filled if status is OrderStatus.CANCELLED else 0,
        validity=vocab.VALIDITY_FROM_DHAN.get(str(row.get("validity") or "DAY").upper(), Validity.DAY),
        variety="regular",
        tag=str(row.get("correlationId") or ""),
        status_message=message,
        placed_at=ist_time(row.get("exchangeTime")) or ist_time(row.get("createTime")),
        updated_at=ist_time(row.get("updateTime")) or ist_time(row.get("createTime")),
    )


def parse_orders(data: Any, master: ScripMaster) -> list[Order]:
    return [parse_order(row, master) for row in rows(data)]


def parse_position(row: Mapping[str, Any], master: ScripMaster) -> Position:
    key = _key(row, master)
    quantity = integer(row.get("netQty"))
    if quantity > 0:
        average = decimal(row.get("buyAvg"))
    elif quantity < 0:
        average = decimal(row.get("sellAvg"))
    else:
        average = ZERO
    return Position(
        exchange=key.exchange,
        tradingsymbol=key.tradingsymbol,
        product=vocab.PRODUCT_FROM_DHAN.get(str(row.get("productType") or "").upper(), Product.NRML),
        quantity=quantity,
        average_price=average,
        realised_pnl=decimal(row.get("realizedProfit")),
        unrealised_pnl=decimal(row.get("unrealizedProfit")),
    )


def parse_positions(data: Any, master: ScripMaster) -> list[Position]:
    return [p for p in (parse_position(row, master) for row in rows(data))]


def parse_margin(data: Any) -> MarginEstimate:
    """`/margincalculator`: `totalMargin` with span, exposure (a shortfall is `insufficientBalance`)."""
    if not isinstance(data, Mapping):
        raise TypeError("margin data is not an object")
    return MarginEstimate(
        total=decimal(data["totalMargin"]),
        span=decimal(data.get("spanMargin")),
        exposure=decimal(data.get("exposureMargin")),
    )


def parse_multi_margin(data: Any) -> MarginEstimate:
    """`/margincalculator/multi`: `total_margin` after the hedge benefit (snake case, strings)."""
    if not isinstance(data, Mapping):
        raise TypeError("multi margin data is not an object")
    return MarginEstimate(
        total=decimal(data["total_margin"]),
        span=decimal(data.get("span_margin")),
        exposure=decimal(data.get("exposure_margin")),
    )


def parse_ltp(data: Any, wanted: Mapping[tuple[str, str], InstrumentKey]) -> dict[InstrumentKey, Decimal]:
    """`/marketfeed/ltp`: `{data: {NSE_FNO: {"49081": {last_price}}}, status}`."""
    if not isinstance(data, Mapping):
        raise TypeError("ltp data is not an object")
    body = data.get("data", data)
    if not isinstance(body, Mapping):
        raise TypeError("ltp data is not an object")
    prices: dict[InstrumentKey, Decimal] = {}
    for segment, by_id in body.items():
        if not isinstance(by_id, Mapping):
            continue
        for security_id, quote in by_id.items():
            key = wanted.get((str(segment).upper(), str(security_id)))
            if key is not None and isinstance(quote, Mapping):
                prices[key] = decimal(quote.get("last_price"))
    return prices


def order_id_of(data: Any) -> str:
    if not isinstance(data, Mapping):
        raise TypeError("order answer is not an object")
    order_id = str(data.get("orderId") or "").strip()
    if not order_id:
        raise KeyError("orderId")
    return order_id


def order_status_of(data: Any) -> str:
    return str(data.get("orderStatus") or "").upper() if isinstance(data, Mapping) else ""


def margin_leg(
    *,
    segment: str,
    security_id: str,
    side: Side,
    quantity: int,
    product: Product,
    price: Decimal,
    trigger: Decimal,
) -> dict[str, Any]:
    """One `scripList` item of `/margincalculator/multi`."""
    return {
        "exchangeSegment": segment,
        "transactionType": side.value,
        "quantity": quantity,
        "productType": vocab.PRODUCT_TO_DHAN[product],
        "securityId": security_id,
        "price": float(price),
        "triggerPrice": float(trigger),
    }


def is_market(order_type: OrderType) -> bool:
    return order_type in (OrderType.MARKET, OrderType.SLM)


__all__ = [
    "Sequence",
    "decimal",
    "is_market",
    "margin_leg",
    "order_id_of",
    "parse_funds",
    "parse_ltp",
    "parse_margin",
    "parse_multi_margin",
    "parse_order",
    "parse_orders",
    "parse_positions",
]
