"""Our requests as kiteconnect call arguments (kite/API.md §6, §8). Pure functions, no I/O."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from brokers.types import OrderRequest, OrderType

NEEDS_PRICE = frozenset({OrderType.LIMIT, OrderType.SL})
NEEDS_TRIGGER = frozenset({OrderType.SL, OrderType.SLM})
NEEDS_MARKET_PROTECTION = frozenset({OrderType.MARKET, OrderType.SLM})
TAG_MAX_CHARS = 20


def check_order_request(req: OrderRequest) -> None:
    """Raise ValueError for requests Kite would refuse or that we must never send."""
    if req.quantity <= 0:
        raise ValueError(f"quantity must be positive, got {req.quantity}")
    if req.order_type in NEEDS_PRICE and req.price is None:
        raise ValueError(f"a {req.order_type} order needs a price")
    if req.order_type in NEEDS_TRIGGER and req.trigger_price is None:
        raise ValueError(f"a {req.order_type} order needs a trigger price")
    if not req.tag:
        raise ValueError("every order needs a tag (it is how an unknown outcome is looked up)")
    if len(req.tag) > TAG_MAX_CHARS or not (req.tag.isascii() and req.tag.isalnum()):
        raise ValueError(f"tag must be 1-{TAG_MAX_CHARS} ASCII letters or digits, got {req.tag!r}")


def _price_text(value: Decimal) -> str:
    return format(value, "f")


def order_params(req: OrderRequest, *, market_protection: int, algo_id: str = "") -> dict[str, Any]:
    """Keyword arguments for `KiteConnect.place_order` (API.md §6.1).

    Price only for LIMIT/SL, trigger only for SL/SL-M, market protection only for MARKET/SL-M
    (the request's own value, else `market_protection`), `algo_id` only when set.
    """
    check_order_request(req)
    params: dict[str, Any] = {
        "variety": req.variety,
        "exchange": req.exchange,
        "tradingsymbol": req.tradingsymbol,
        "transaction_type": req.side.value,
        "quantity": req.quantity,
        "product": req.product.value,
        "order_type": req.order_type.value,
        "validity": req.validity.value,
        "tag": req.tag,
    }
    if req.order_type in NEEDS_PRICE and req.price is not None:
        params["price"] = _price_text(req.price)
    if req.order_type in NEEDS_TRIGGER and req.trigger_price is not None:
        params["trigger_price"] = _price_text(req.trigger_price)
    if req.order_type in NEEDS_MARKET_PROTECTION:
        protection = req.market_protection if req.market_protection is not None else market_protection
        params["market_protection"] = protection
    if algo_id:
        params["algo_id"] = algo_id
    return params


def modify_params(
    *,
    variety: str,
    order_id: str,
    quantity: int | None,
    price: Decimal | None,
    trigger_price: Decimal | None,
    order_type: str | None,
    market_protection: int,
) -> dict[str, Any]:
    """Keyword arguments for `KiteConnect.modify_order`; None fields are left as they are."""
    params: dict[str, Any] = {"variety": variety, "order_id": order_id}
    if quantity is not None:
        if quantity <= 0:
            raise ValueError(f"quantity must be positive, got {quantity}")
        params["quantity"] = quantity
    if price is not None:
        params["price"] = _price_text(price)
    if trigger_price is not None:
        params["trigger_price"] = _price_text(trigger_price)
    if order_type is not None:
        kind = OrderType(order_type)  # ValueError for an unknown type
        params["order_type"] = kind.value
        if kind in NEEDS_MARKET_PROTECTION:
            params["market_protection"] = market_protection
    return params


def margin_params(req: OrderRequest) -> dict[str, Any]:
    """One item of the JSON body of `/margins/orders` and `/margins/basket` (API.md §8).

    Prices go out as JSON numbers (floats): the wire format, not our arithmetic.
    """
    return {
        "exchange": req.exchange,
        "tradingsymbol": req.tradingsymbol,
        "transaction_type": req.side.value,
        "variety": req.variety,
        "product": req.product.value,
        "order_type": req.order_type.value,
        "quantity": req.quantity,
        "price": float(req.price) if req.price is not None else 0,
        "trigger_price": float(req.trigger_price) if req.trigger_price is not None else 0,
    }
