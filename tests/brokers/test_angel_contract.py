"""Angel One's documented payloads (tests/fixtures/angel, README there) read by the adapter, and
the simulator's answers carrying every documented key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.angel import parse
from brokers.angel.errors import envelope_error, succeeded
from brokers.angel.scrip import ScripMaster, scrips_from_rows
from brokers.errors import BrokerUnavailable, InputRejected, OrderRejected, OutcomeUnknown, TokenExpired
from brokers.paper.models import PaperOrder, PaperPosition
from brokers.paper.selectors import paper_funds
from brokers.types import InstrumentKey, InstrumentType, OrderStatus, OrderType, Product, Side
from lab.angel_sim import payloads
from tests.engine_helpers import FUT, build_desk

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "angel"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def master() -> ScripMaster:
    return ScripMaster(scrips_from_rows(fixture("scrip_master.json")))


def test_angel_contract_scrip_master_rows_get_nse_style_keys_and_angel_tokens(master):
    fut = master.by_key(InstrumentKey("NFO", "NIFTY24DECFUT"))
    monthly = master.by_key(InstrumentKey("NFO", "NIFTY24DEC24000CE"))
    weekly = master.by_key(InstrumentKey("NFO", "NIFTY24D1924000PE"))
    half = master.by_key(InstrumentKey("NFO", "NIFTY24D1922550CE"))
    equity = master.by_key(InstrumentKey("NSE", "RELIANCE"))
    assert fut and (fut.token, fut.angel_symbol, fut.instrument.lot_size) == ("35089", "NIFTY26DEC24FUT", 25)
    assert monthly and (monthly.token, monthly.instrument.strike) == ("35001", Decimal("24000"))
    assert (
        monthly.instrument.instrument_type is InstrumentType.CE and monthly.instrument.underlying == "NIFTY"
    )
    assert weekly and weekly.angel_symbol == "NIFTY19DEC2424000PE"
    assert half and half.instrument.strike == Decimal("22550")
    assert equity and (equity.angel_symbol, equity.instrument.tick_size) == ("RELIANCE-EQ", Decimal("0.05"))
    assert fut.instrument.expiry == datetime(2024, 12, 26, 10, 0, tzinfo=UTC)  # 15:30 IST
    assert master.by_key(InstrumentKey("NFO", "BANKNIFTY24DECFUT")) is None


def test_angel_contract_rms_maps_used_and_available():
    funds = parse.parse_funds(fixture("rms.json")["data"])
    assert (funds.used, funds.available) == (Decimal("0"), Decimal("9999999999999"))


def test_angel_contract_order_book_row(master):
    (order,) = parse.parse_orders(fixture("order_book.json")["data"], master)
    assert order.order_id == "201020000000080"  # a number in the documentation's sample
    assert order.key == InstrumentKey("NSE", "SBIN-EQ")  # not in this scrip master: Angel's own name
    assert (order.side, order.order_type, order.product) == (Side.BUY, OrderType.LIMIT, Product.MIS)
    assert (order.status, order.quantity, order.cancelled_quantity) == (OrderStatus.CANCELLED, 1, 1)
    assert order.price == Decimal("194.00") and order.pending_quantity == 0
    assert order.placed_at == datetime(2020, 10, 20, 7, 40, 59, tzinfo=UTC)


def test_angel_contract_rejected_order_keeps_its_reason(master):
    order = parse.parse_order(fixture("order_details_rejected.json")["data"], master)
    assert order.key == InstrumentKey("NSE", "RELIANCE")
    assert order.status is OrderStatus.REJECTED and "Insufficient Funds" in order.status_message
    assert (order.product, order.price) == (Product.CNC, Decimal("2298.25"))


def test_angel_contract_positions(master):
    (position,) = parse.parse_positions(fixture("positions.json")["data"], master)
    assert (position.key, position.quantity, position.product) == (
        InstrumentKey("NSE", "RELIANCE"),
        1,
        Product.CNC,
    )
    assert position.average_price == Decimal("2235.80")


def test_angel_contract_empty_book_and_positions_are_null(master):
    assert parse.parse_orders(None, master) == [] and parse.parse_positions(None, master) == []


def test_angel_contract_margin_batch():
    estimate = parse.parse_margin(fixture("margin_batch.json")["data"])
    assert (estimate.total, estimate.option_premium) == (Decimal("29612.35"), Decimal("10100"))


def test_angel_contract_order_answers_carry_the_order_id():
    assert parse.order_id_of(fixture("place_order.json")["data"]) == "200910000000111"
    assert parse.order_id_of(fixture("modify_order.json")["data"]) == "201020000000080"


def test_angel_contract_error_envelopes():
    login, token = fixture("error_login.json"), fixture("error_token.json")
    assert not succeeded(login) and not succeeded(token) and succeeded(fixture("login.json"))
    assert isinstance(envelope_error(token, write=True), TokenExpired)
    # AB1007 is "AMX Error" in the code table: Angel's side failed, the write may exist.
    assert isinstance(envelope_error(login, write=True), OutcomeUnknown)
    assert isinstance(envelope_error(login, write=False), BrokerUnavailable)
    assert isinstance(envelope_error({"status": False, "errorcode": "AB4008"}, write=True), InputRejected)
    assert isinstance(envelope_error({"status": False, "errorcode": "AB1006"}, write=True), OrderRejected)
    assert isinstance(envelope_error({"status": False, "errorcode": ""}, write=True), OutcomeUnknown)


@pytest.mark.django_db
def test_angel_contract_simulator_answers_carry_every_documented_key():
    desk = build_desk()
    desk.place("BUY", FUT, 75, user="C1")
    order = PaperOrder.objects.select_related("instrument").get(account__user_id="C1")
    position = PaperPosition.objects.select_related("instrument").get(account__user_id="C1")

    assert set(fixture("order_book.json")["data"][0]) <= set(payloads.order(order))
    assert set(fixture("order_details_rejected.json")["data"]) <= set(payloads.order(order))
    assert set(fixture("positions.json")["data"][0]) <= set(
        payloads.position(position, unrealised=Decimal(0))
    )
    assert set(fixture("rms.json")["data"]) == set(payloads.rms(paper_funds(user_id="C1")))
    assert set(fixture("scrip_master.json")[0]) == set(payloads.scrip(order.instrument))
    margin = payloads.margin(parse.parse_margin(fixture("margin_batch.json")["data"]), benefit=Decimal(0))
    assert set(fixture("margin_batch.json")["data"]["marginComponents"]) == set(margin["marginComponents"])
