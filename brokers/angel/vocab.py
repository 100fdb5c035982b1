"""Angel One's words for products, order types, varieties, durations and statuses, mapped onto
brokers.types (docs/angel.md §Vocabulary). Nothing outside brokers/angel sees Angel's words."""

from __future__ import annotations

from brokers.types import OrderStatus, OrderType, Product, Validity

PRODUCT_TO_ANGEL: dict[Product, str] = {
    Product.MIS: "INTRADAY",
    Product.NRML: "CARRYFORWARD",
    Product.CNC: "DELIVERY",
    Product.MTF: "MARGIN",
}
PRODUCT_FROM_ANGEL: dict[str, Product] = {value: key for key, value in PRODUCT_TO_ANGEL.items()}

ORDER_TYPE_TO_ANGEL: dict[OrderType, str] = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.SL: "STOPLOSS_LIMIT",
    OrderType.SLM: "STOPLOSS_MARKET",
}
ORDER_TYPE_FROM_ANGEL: dict[str, OrderType] = {value: key for key, value in ORDER_TYPE_TO_ANGEL.items()}

VALIDITY_TO_ANGEL: dict[Validity, str] = {Validity.DAY: "DAY", Validity.IOC: "IOC"}
VALIDITY_FROM_ANGEL: dict[str, Validity] = {value: key for key, value in VALIDITY_TO_ANGEL.items()}

# Angel's variety: NORMAL for plain orders, STOPLOSS for stop-loss orders, ROBO (bracket) never sent.
VARIETY_NORMAL = "NORMAL"
VARIETY_STOPLOSS = "STOPLOSS"
NEUTRAL_VARIETY = "regular"

# `orderstatus` of the order book, lower-case as Angel sends it. "open pending", "validation
# pending", "put order req received", "modify ..." are in-flight states at the exchange gateway.
STATUS_FROM_ANGEL: dict[str, OrderStatus] = {
    "complete": OrderStatus.COMPLETE,
    "cancelled": OrderStatus.CANCELLED,
    "rejected": OrderStatus.REJECTED,
    "open": OrderStatus.OPEN,
    "trigger pending": OrderStatus.TRIGGER_PENDING,
    "after market order req received": OrderStatus.PENDING,
    "amo req received": OrderStatus.PENDING,
}


def variety_for(order_type: OrderType) -> str:
    """Angel's variety: stop-loss order types go as STOPLOSS, the others as NORMAL."""
    return VARIETY_STOPLOSS if order_type in (OrderType.SL, OrderType.SLM) else VARIETY_NORMAL


def status_from_angel(text: str) -> OrderStatus:
    """Every status Angel has not finished with (pending, modify/cancel pending, transit) is PENDING."""
    return STATUS_FROM_ANGEL.get(text.strip().lower(), OrderStatus.PENDING)
