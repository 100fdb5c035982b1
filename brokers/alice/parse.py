"""Alice Blue's payloads (the `result` of its envelopes) as brokers.types values (docs/alice.md).

Numbers come as numbers or strings and are read as Decimal; times (`26-May-2025 11:42:10`,
`2025-05-26 14:27:43`) are IST wall-clock and become aware UTC. Instruments are named by the
engine's keys through the contract master (by `instrumentId` and exchange); a row the master does
not know keeps Alice Blue's own symbol.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from brokers.alice import vocab
from brokers.alice.scrip import ContractMaster
from brokers.types import (
    Funds,
    InstrumentKey,
    MarginEstimate,
    Order,
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
    if not text or text in ("--", "NA"):
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
    if not text:
        return None
    for fmt in ("%d-%b-%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=IST).astimezone(UTC)
        except ValueError:
            continue
    return None


def rows(result: Any) -> list[Mapping[str, Any]]:
    if result is None or result == "":
        return []
    if not isinstance(result, list):
        raise TypeError(f"expected a list, got {type(result).__name__}")
    return [row for row in result if isinstance(row, Mapping)]


def first(result: Any) -> Mapping[str, Any]:
    found = rows(result)
    if not found:
        raise KeyError("empty result")
    return found[0]


def parse_funds(result: Any) -> Funds:
    """`/limits`: used = `utilizedMargin`, available = `tradingLimit` (docs/alice.md §Funds)."""
    row = first(result)
    used = decimal(row.get("utilizedMargin"))
    available = decimal(row.get("tradingLimit"))
    segment = SegmentFunds(segment="all", enabled=True, used=used, available=available)
    return Funds(used=used, available=available, segments=(segment,))


def _key(row: Mapping[str, Any], master: ContractMaster) -> InstrumentKey:
    exchange = str(row.get("exchange") or "").upper()
    symbol = str(row.get("tradingSymbol") or "").upper()
    contract = master.by_alice(exchange=exchange, token=str(row.get("instrumentId") or ""), symbol=symbol)
    return contract.key if contract is not None else InstrumentKey(exchange, symbol)


def parse_order(row: Mapping[str, Any], master: ContractMaster) -> Order:
    key = _key(row, master)
    quantity = integer(row.get("quantity"))
    filled = integer(row.get("filledQuantity"))
    status = vocab.status_from_alice(str(row.get("orderStatus") or ""))
    pending = 0 if status.is_final else max(0, integer(row.get("pendingQuantity")) or quantity - filled)
    placed = ist_time(row.get("orderTime")) or ist_time(row.get("exchangeTimestamp"))
    tag = str(row.get("orderTag") or "")
    return Order(
        order_id=str(row.get("brokerOrderId") or ""),
        exchange=key.exchange,
        tradingsymbol=key.tradingsymbol,
        side=Side(str(row.get("transactionType") or "").upper()),
        order_type=vocab.ORDER_TYPE_FROM_ALICE[str(row.get("orderType") or "").upper()],
        product=vocab.PRODUCT_FROM_ALICE.get(str(row.get("product") or "").upper(), Product.NRML),
        quantity=quantity,
        status=status,
        price=decimal(row.get("price")),
        trigger_price=decimal(row.get("slTriggerPrice")),
        filled_quantity=filled,
        average_price=decimal(row.get("averageTradedPrice")),
        pending_quantity=pending,
        cancelled_quantity=integer(row.get("cancelledQuantity")),
        validity=vocab.VALIDITY_FROM_ALICE.get(str(row.get("validity") or "DAY").upper(), Validity.DAY),
        variety=vocab.NEUTRAL_VARIETY,
        tag="" if tag == "--" else tag,
        status_message=str(row.get("rejectionReason") or ""),
        placed_at=placed,
        updated_at=ist_time(row.get("exchangeUpdateTime")) or ist_time(row.get("brokerUpdateTime")) or placed,
        parent_order_id=str(row.get("mainLegOrderId") or "") or None,
    )


def parse_orders(result: Any, master: ContractMaster) -> list[Order]:
    return [parse_order(row, master) for row in rows(result)]


def parse_position(row: Mapping[str, Any], master: ContractMaster) -> Position:
    key = _key(row, master)
    quantity = integer(row.get("netQuantity"))
    return Position(
        exchange=key.exchange,
        tradingsymbol=key.tradingsymbol,
        product=vocab.PRODUCT_FROM_ALICE.get(str(row.get("product") or "").upper(), Product.NRML),
        quantity=quantity,
        average_price=decimal(row.get("netAveragePrice")) if quantity else ZERO,
        last_price=decimal(row.get("ltp")),
        realised_pnl=decimal(row.get("realizedPnl")),
        unrealised_pnl=decimal(row.get("unrealizedPnl")),
    )


def parse_positions(result: Any, master: ContractMaster) -> list[Position]:
    return [parse_position(row, master) for row in rows(result)]


def parse_margin(result: Any) -> MarginEstimate:
    """`/orders/checkMargin` and `/orders/basket/margin`: `currentOrderMargin` is what the order (or
    basket) needs; `fundShort` what is missing."""
    row = first(result)
    return MarginEstimate(total=decimal(row.get("currentOrderMargin")))


def order_id_of(result: Any) -> str:
    order_id = str(first(result).get("brokerOrderId") or "").strip()
    if not order_id:
        raise KeyError("brokerOrderId")
    return order_id
