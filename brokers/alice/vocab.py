"""Alice Blue's words for products, order types, validities and statuses (docs/alice.md
§Vocabulary), mapped onto brokers.types. Nothing outside brokers/alice sees Alice Blue's words."""

from __future__ import annotations

from brokers.types import OrderStatus, OrderType, Product, Validity

# Appendix "Product Type": INTRADAY, LONGTERM, MTF; NORMAL for F&O carry forward (EC969).
PRODUCT_TO_ALICE: dict[Product, str] = {
    Product.MIS: "INTRADAY",
    Product.NRML: "NORMAL",
    Product.CNC: "LONGTERM",
    Product.MTF: "MTF",
}
PRODUCT_FROM_ALICE: dict[str, Product] = {value: key for key, value in PRODUCT_TO_ALICE.items()}
PRODUCT_FROM_ALICE.update(
    {"MIS": Product.MIS, "NRML": Product.NRML, "CNC": Product.CNC, "DELIVERY": Product.CNC}
)

ORDER_TYPE_TO_ALICE: dict[OrderType, str] = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.SL: "SL",
    OrderType.SLM: "SLM",
}
ORDER_TYPE_FROM_ALICE: dict[str, OrderType] = {value: key for key, value in ORDER_TYPE_TO_ALICE.items()}
ORDER_TYPE_FROM_ALICE.update({"MKT": OrderType.MARKET, "L": OrderType.LIMIT, "SL-M": OrderType.SLM})

# The basket margin call still takes the older words (docs §Basket Margin): L, MKT, SL, SL-M; B/S.
BASKET_PRICE_TYPE: dict[OrderType, str] = {
    OrderType.MARKET: "MKT",
    OrderType.LIMIT: "L",
    OrderType.SL: "SL",
    OrderType.SLM: "SL-M",
}
BASKET_PRODUCT: dict[Product, str] = {
    Product.MIS: "MIS",
    Product.NRML: "NRML",
    Product.CNC: "CNC",
    Product.MTF: "MTF",
}

VALIDITY_TO_ALICE: dict[Validity, str] = {Validity.DAY: "DAY", Validity.IOC: "IOC"}
VALIDITY_FROM_ALICE: dict[str, Validity] = {value: key for key, value in VALIDITY_TO_ALICE.items()}

COMPLEXITY_REGULAR = "REGULAR"
NEUTRAL_VARIETY = "regular"

# `orderStatus` of the order book (upper case as the docs show; matched case-insensitively).
STATUS_FROM_ALICE: dict[str, OrderStatus] = {
    "COMPLETE": OrderStatus.COMPLETE,
    "EXECUTED": OrderStatus.COMPLETE,
    "CANCELLED": OrderStatus.CANCELLED,
    "CANCELED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
    "OPEN": OrderStatus.OPEN,
    "TRIGGER PENDING": OrderStatus.TRIGGER_PENDING,
    "TRIGGER_PENDING": OrderStatus.TRIGGER_PENDING,
}


def status_from_alice(text: str) -> OrderStatus:
    """Every status Alice Blue has not finished with (pending, validation, modify) is PENDING."""
    return STATUS_FROM_ALICE.get(text.strip().upper(), OrderStatus.PENDING)
