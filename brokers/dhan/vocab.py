"""Dhan's words for products, order types, validities, statuses and exchange segments, mapped onto
brokers.types (docs/dhan.md §Vocabulary). Nothing outside brokers/dhan sees Dhan's words."""

from __future__ import annotations

from brokers.types import OrderStatus, OrderType, Product, Validity

PRODUCT_TO_DHAN: dict[Product, str] = {
    Product.MIS: "INTRADAY",
    Product.NRML: "MARGIN",
    Product.CNC: "CNC",
    Product.MTF: "MTF",
}
PRODUCT_FROM_DHAN: dict[str, Product] = {value: key for key, value in PRODUCT_TO_DHAN.items()}

ORDER_TYPE_TO_DHAN: dict[OrderType, str] = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.SL: "STOP_LOSS",
    OrderType.SLM: "STOP_LOSS_MARKET",
}
ORDER_TYPE_FROM_DHAN: dict[str, OrderType] = {value: key for key, value in ORDER_TYPE_TO_DHAN.items()}

VALIDITY_TO_DHAN: dict[Validity, str] = {Validity.DAY: "DAY", Validity.IOC: "IOC"}
VALIDITY_FROM_DHAN: dict[str, Validity] = {value: key for key, value in VALIDITY_TO_DHAN.items()}

# Exchange segments (Annexure) <-> the engine's exchanges.
SEGMENT_TO_EXCHANGE: dict[str, str] = {
    "NSE_EQ": "NSE",
    "NSE_FNO": "NFO",
    "BSE_EQ": "BSE",
    "BSE_FNO": "BFO",
    "MCX_COMM": "MCX",
    "NSE_CURRENCY": "CDS",
    "BSE_CURRENCY": "BCD",
    "IDX_I": "INDICES",
}
EXCHANGE_TO_SEGMENT: dict[str, str] = {value: key for key, value in SEGMENT_TO_EXCHANGE.items()}

# orderStatus (order book, /orders/external). PENDING is "awaiting execution" at the exchange.
STATUS_FROM_DHAN: dict[str, OrderStatus] = {
    "TRANSIT": OrderStatus.PENDING,
    "PENDING": OrderStatus.OPEN,
    "PART_TRADED": OrderStatus.OPEN,
    "TRADED": OrderStatus.COMPLETE,
    "REJECTED": OrderStatus.REJECTED,
    "CANCELLED": OrderStatus.CANCELLED,
    "EXPIRED": OrderStatus.CANCELLED,
}


def status_from_dhan(text: str, order_type: OrderType) -> OrderStatus:
    """Dhan's status; a PENDING stop-loss order is waiting for its trigger. Unknown words: PENDING."""
    status = STATUS_FROM_DHAN.get(text.strip().upper(), OrderStatus.PENDING)
    if (
        status is OrderStatus.OPEN
        and order_type in (OrderType.SL, OrderType.SLM)
        and text.upper() == "PENDING"
    ):
        return OrderStatus.TRIGGER_PENDING
    return status
