"""Contract tests over Alice Blue's published payloads (tests/fixtures/alice/README.md)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from brokers.alice import parse
from brokers.alice.errors import body_error, succeeded
from brokers.alice.scrip import ContractMaster
from brokers.errors import InputRejected, OutcomeUnknown, TokenExpired
from brokers.types import OrderStatus, OrderType, Product, Side

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alice"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_limits_map_utilized_margin_to_used_and_trading_limit_to_available():
    body = load("limits.json")
    assert succeeded(body)
    funds = parse.parse_funds(body["result"])
    assert (funds.used, funds.available) == (Decimal("0"), Decimal("0"))


def test_order_book_row_of_the_docs():
    (order,) = parse.parse_orders(load("order_book.json")["result"], ContractMaster([]))
    assert (order.order_id, order.side, order.order_type, order.product) == (
        "25071400112229",
        Side.BUY,
        OrderType.LIMIT,
        Product.CNC,
    )
    assert (order.status, order.price, order.status_message[:3]) == (
        OrderStatus.REJECTED,
        Decimal("1120.15"),
        "ORA",
    )


def test_place_order_answer_and_margin():
    assert parse.order_id_of(load("place_order.json")["result"]) == "250526000002697"
    assert parse.parse_margin(load("check_margin.json")["result"]).total == Decimal("113.70")


def test_ec_codes():
    assert isinstance(
        body_error({"status": "Not_ok", "message": "EC087"}, status=200, write=True), TokenExpired
    )
    assert isinstance(
        body_error({"status": "Not_ok", "message": "EC912"}, status=200, write=True), OutcomeUnknown
    )
    tag = body_error({"status": "Not_ok", "message": "EC971"}, status=200, write=True)
    assert isinstance(tag, InputRejected) and tag.code == "tag_invalid"
    assert isinstance(body_error(None, status=502, write=True), OutcomeUnknown)
