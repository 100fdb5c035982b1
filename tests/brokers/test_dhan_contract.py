"""Contract tests: DhanHQ v2's documented payloads (tests/fixtures/dhan/) through the dhanhq SDK's
own envelope code (`DhanHTTP._parse_response`) and the adapter's parsers and error mapping."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from dhanhq import DhanHTTP
from urllib3.exceptions import NewConnectionError

from brokers.dhan import parse
from brokers.dhan.errors import failure_error
from brokers.dhan.scrip import ScripMaster, scrips_from_csv
from brokers.dhan.session import session_from_login
from brokers.dhan.stream import parse_order_alert
from brokers.errors import (
    BrokerUnavailable,
    InputRejected,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    TokenExpired,
)
from brokers.types import InstrumentKey, InstrumentType, OrderStatus, OrderType, Product, Side

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dhan"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sdk_answer(name: str, status: int = 200) -> dict:
    """What the SDK returns for Dhan answering `name` with HTTP `status`."""
    response = requests.Response()
    response.status_code = status
    response._content = fixture(name)
    return DhanHTTP(client_id="1000000003", access_token="t")._parse_response(response)


@pytest.fixture
def master() -> ScripMaster:
    return ScripMaster(scrips_from_csv(fixture("scrip_master.csv").decode()))


def test_fund_limit_maps_utilized_and_the_sdk_spelling_of_available():
    funds = parse.parse_funds(sdk_answer("fund_limit.json")["data"])
    assert (funds.used, funds.available) == (Decimal("15202.0"), Decimal("98440.0"))
    assert funds.capital == Decimal("113642.0")  # = sodLimit


def test_scrip_master_keys_by_security_id_and_segment_with_nse_style_symbols(master):
    weekly = master.by_security("NSE_FNO", "35001")
    monthly = master.by_security("NSE_FNO", "35002")
    assert weekly.dhan_symbol == monthly.dhan_symbol  # Dhan spells both the same
    assert weekly.key == InstrumentKey("NFO", "NIFTY24D1924000CE")
    assert monthly.key == InstrumentKey("NFO", "NIFTY24DEC24000CE")
    assert master.by_key(InstrumentKey("NFO", "NIFTY24DECFUT")).security_id == "35000"
    tcs = master.by_key(InstrumentKey("NSE", "TCS"))
    assert (tcs.segment, tcs.security_id, tcs.instrument.instrument_type) == (
        "NSE_EQ",
        "11536",
        InstrumentType.EQ,
    )
    fut = master.by_security("NSE_FNO", "35000").instrument
    assert (fut.lot_size, fut.tick_size, fut.expiry) == (
        75,
        Decimal("0.1"),
        datetime(2024, 12, 26, 10, 0, tzinfo=UTC),
    )
    assert master.by_security("NSE_FNO", "35003") is None  # no option type: not tradable here


def test_order_book_rows_with_status_tag_and_instrument(master):
    pending, traded = parse.parse_orders(sdk_answer("order_list.json")["data"], master)
    assert (pending.order_id, pending.key, pending.tag) == (
        "112111182198",
        InstrumentKey("NSE", "TCS"),
        "123abc678",
    )
    assert (pending.status, pending.product, pending.order_type, pending.pending_quantity) == (
        OrderStatus.OPEN,
        Product.MIS,
        OrderType.MARKET,
        5,
    )
    assert pending.placed_at == datetime(2021, 11, 24, 8, 3, 3, tzinfo=UTC)
    assert (traded.key, traded.side, traded.status) == (
        InstrumentKey("NFO", "NIFTY24D1924000CE"),
        Side.SELL,
        OrderStatus.COMPLETE,
    )
    assert (traded.filled_quantity, traded.average_price, traded.product, traded.tag) == (
        75,
        Decimal("121.0"),
        Product.NRML,
        "R12C4S0",
    )


def test_positions_signed_quantity_and_pnl(master):
    (position,) = parse.parse_positions(sdk_answer("positions.json")["data"], master)
    assert (position.key, position.quantity, position.product) == (
        InstrumentKey("NSE", "TCS"),
        40,
        Product.CNC,
    )
    assert (position.average_price, position.unrealised_pnl) == (Decimal("3345.8"), Decimal("6122.0"))


def test_margin_calculators_single_and_multi():
    single = parse.parse_margin(sdk_answer("margin_single.json")["data"])
    assert (single.total, single.span, single.exposure) == (
        Decimal("2800.00"),
        Decimal("1200.00"),
        Decimal("1003.00"),
    )
    multi = parse.parse_multi_margin(sdk_answer("margin_multi.json")["data"])
    assert (multi.total, multi.span) == (Decimal("150000.00"), Decimal("50000.00"))


def test_place_order_answer_gives_the_order_id():
    assert parse.order_id_of(sdk_answer("place_order.json")["data"]) == "112111182198"


@pytest.mark.parametrize(
    ("name", "status", "write", "expected", "code"),
    [
        ("error_rate_limit.json", 429, True, RateLimited, "rate_limited"),
        ("error_token.json", 401, False, TokenExpired, "token_expired"),
        ("error_invalid_token.json", 400, True, TokenExpired, "token_expired"),
        ("error_order.json", 400, True, OrderRejected, "order_rejected"),
        ("error_ip.json", 400, True, Exception, "ip_not_allowed"),
        ("error_server.json", 500, True, OutcomeUnknown, "outcome_unknown"),
        ("error_server.json", 500, False, BrokerUnavailable, "broker_unavailable"),
    ],
)
def test_refusals_by_dh_code(name, status, write, expected, code):
    answer = sdk_answer(name, status)
    assert answer["status"] == "failure" and isinstance(answer["remarks"], dict)
    error = failure_error(answer, write=write, http_status=status)
    assert isinstance(error, expected) and error.code == code


def test_an_unreadable_body_after_a_write_is_unknown_never_a_refusal(caplog):
    response = requests.Response()
    response.status_code = 502
    response._content = b"<html>Bad Gateway</html>"
    with caplog.at_level(logging.DEBUG):
        answer = DhanHTTP(client_id="1", access_token="t")._parse_response(response)
    assert isinstance(answer["remarks"], str)  # the SDK's "unknown" shape
    assert isinstance(failure_error(answer, write=True), OutcomeUnknown)
    assert isinstance(failure_error(answer, write=False), BrokerUnavailable)


def test_a_timeout_string_is_unknown_and_a_refused_connection_is_not_sent():
    timeout = {"status": "failure", "remarks": "Read timed out. (read timeout=7)", "data": ""}
    assert isinstance(failure_error(timeout, write=True, cause=requests.ReadTimeout("x")), OutcomeUnknown)
    refused = requests.ConnectionError(NewConnectionError(None, "Connection refused"))
    error = failure_error(timeout, write=True, cause=refused)
    assert isinstance(error, BrokerUnavailable) and "not sent" in error.message


def test_secrets_are_redacted_from_messages():
    answer = {"status": "failure", "remarks": "ProxyError http://user:hunter22@proxy:3128", "data": ""}
    error = failure_error(answer, write=True, secrets=("http://user:hunter22@proxy:3128",))
    assert "hunter22" not in error.message


def test_data_error_on_a_lookup_is_not_found():
    answer = {
        "status": "failure",
        "remarks": {"error_code": "DH-907", "error_message": "No data"},
        "data": "",
    }
    error = failure_error(answer, write=False, http_status=404)
    assert isinstance(error, InputRejected) and error.code == "not_found"


def test_generate_token_answer_is_a_session_of_24_hours_at_most():
    body = json.loads(fixture("generate_token.json"))
    now = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
    session = session_from_login(body, client_id="1000000401", now=now)
    assert session.access_token.startswith("eyJ")
    assert session.expires_at == datetime(2025, 12, 31, 18, 30, tzinfo=UTC)  # 00:00 IST from expiryTime
    with pytest.raises(TokenExpired):
        session_from_login(body, client_id="1000000999", now=now)
    assert "eyJ" not in repr(session)


def test_order_alert_of_the_stream():
    order = parse_order_alert(json.loads(fixture("order_alert.json")))
    assert (order.order_id, order.status, order.side, order.order_type, order.product) == (
        "1124091136546",
        OrderStatus.CANCELLED,
        Side.BUY,
        OrderType.LIMIT,
        Product.CNC,
    )
