"""Contract tests: Zerodha's own payloads (tests/fixtures/kite) through the real SDK and our parsers.

Success payloads are served from a local HTTP server to the real kiteconnect client, so the SDK's
own conversions (timestamps, CSV) run; error payloads check the SDK's exception mapping and ours.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from kiteconnect import KiteConnect

from brokers.errors import (
    BrokerUnavailable,
    InputRejected,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    TokenExpired,
)
from brokers.kite import parse
from brokers.kite.client import KiteBroker
from brokers.kite.errors import MAX_MODIFICATIONS_CODE
from brokers.kite.instruments import InstrumentCache
from brokers.types import (
    InstrumentKey,
    InstrumentType,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
)
from tests.kite_http import FIXTURES_DIR, KiteHTTPServer, Reply, fixture_bytes, fixture_json, unused_port


@pytest.fixture
def server():
    with KiteHTTPServer() as srv:
        yield srv


@pytest.fixture
def sleeps():
    return []


def make_broker(root: str, sleeps: list[float], **kwargs) -> KiteBroker:
    kwargs.setdefault("timeout", 2.0)
    return KiteBroker(
        api_key="testkey",
        access_token="testtoken",
        root=root,
        sleep=sleeps.append,
        instrument_cache=InstrumentCache(),
        **kwargs,
    )


@pytest.fixture
def broker(server, sleeps):
    return make_broker(server.root, sleeps)


def market_buy(**overrides) -> OrderRequest:
    fields = {
        "exchange": "NSE",
        "tradingsymbol": "INFY",
        "side": Side.BUY,
        "quantity": 1,
        "product": Product.CNC,
        "order_type": OrderType.MARKET,
        "tag": "c1a2",
    }
    fields.update(overrides)
    return OrderRequest(**fields)


# --- funds ------------------------------------------------------------------------------------


def test_funds_margins_json_uses_debits_and_net(server, broker):
    server.add("GET", "/user/margins", Reply.fixture("margins.json"))

    funds = broker.funds()

    equity, commodity = funds.segments
    assert (equity.segment, equity.used, equity.available) == (
        "equity",
        Decimal("145706.55"),
        Decimal("99725.05"),
    )
    assert equity.used + equity.available == Decimal("245431.6")  # = opening_balance
    assert (commodity.segment, commodity.used, commodity.available) == (
        "commodity",
        Decimal("0"),
        Decimal("100661.7"),
    )
    assert funds.used == Decimal("145706.55")
    assert funds.available == Decimal("200386.75")
    assert funds.capital == Decimal("346093.3")


def test_funds_disabled_segment_is_not_counted(server, broker):
    data = fixture_json("margins.json")["data"]
    data["commodity"]["enabled"] = False
    server.add("GET", "/user/margins", Reply.ok(data))

    funds = broker.funds()

    assert funds.capital == Decimal("245431.6")
    assert len(funds.segments) == 2


def test_parse_segment_funds_equity_segment_payload():
    segment = parse.parse_segment_funds("equity", fixture_json("margins_equity.json")["data"])

    assert segment.used == Decimal("145706.55")
    assert segment.available == Decimal("99725.05")
    assert segment.enabled is True


def test_parse_segment_funds_commodity_payload_with_negative_zero():
    segment = parse.parse_segment_funds("commodity", fixture_json("margin_commodity.json")["data"])

    assert segment.used == Decimal("871.17")
    assert segment.available == Decimal("96426.33")
    assert segment.used + segment.available == Decimal("97297.5")  # = opening_balance


# --- orders -----------------------------------------------------------------------------------


def test_orders_json_statuses_tags_and_ids(server, broker):
    server.add("GET", "/orders", Reply.fixture("orders.json"))

    orders = broker.orders()

    assert [o.order_id for o in orders] == [str(o["order_id"]) for o in fixture_json("orders.json")["data"]]
    assert [o.status for o in orders] == [
        OrderStatus.CANCELLED,
        OrderStatus.COMPLETE,
        OrderStatus.COMPLETE,
        OrderStatus.REJECTED,
        OrderStatus.COMPLETE,
        OrderStatus.COMPLETE,
        OrderStatus.CANCELLED,
        OrderStatus.CANCELLED,
        OrderStatus.COMPLETE,
        OrderStatus.COMPLETE,
    ]
    assert [o.tag for o in orders] == [
        "",
        "",
        "",
        "icebergord",
        "connect test order1",
        "connect test order2",
        "",
        "",
        "",
        "",
    ]
    assert orders[-1].order_id == "1953367517686685697"  # 19 digits, kept as a string


def test_orders_json_fields_are_typed(server, broker):
    server.add("GET", "/orders", Reply.fixture("orders.json"))

    by_id = {o.order_id: o for o in broker.orders()}

    first = by_id["100000000000000"]
    assert (first.exchange, first.tradingsymbol, first.side) == ("CDS", "USDINR21JUNFUT", Side.BUY)
    assert (first.order_type, first.product, first.validity) == (OrderType.LIMIT, Product.NRML, Validity.DAY)
    assert (first.quantity, first.pending_quantity, first.cancelled_quantity) == (1, 1, 1)
    assert first.price == Decimal("72")
    assert first.status_message == ""
    rejected = by_id["220524001859672"]
    assert rejected.variety == "iceberg"
    assert rejected.validity == Validity.TTL
    assert rejected.status_message.startswith("Insufficient funds")
    assert by_id["250117800776785"].product == Product.MTF
    filled = by_id["1953367517686685697"]
    assert (filled.order_type, filled.quantity, filled.filled_quantity) == (OrderType.MARKET, 150, 150)
    assert filled.average_price == Decimal("12.3")
    assert by_id["300000000000000"].average_price == Decimal("109.4")


def test_orders_json_timestamps_are_aware_utc(server, broker):
    server.add("GET", "/orders", Reply.fixture("orders.json"))

    first = broker.orders()[0]

    # order_timestamp 2021-05-31 09:18:57 IST, exchange_update_timestamp 09:18:58 IST
    assert first.placed_at == datetime(2021, 5, 31, 3, 48, 57, tzinfo=UTC)
    assert first.updated_at == datetime(2021, 5, 31, 3, 48, 58, tzinfo=UTC)
    assert first.placed_at.utcoffset().total_seconds() == 0


def test_order_history_order_info_json_status_sequence(server, broker):
    server.add("GET", "/orders/171229000724687", Reply.fixture("order_info.json"))

    history = broker.order_history("171229000724687")

    # PUT ORDER REQ RECEIVED, VALIDATION PENDING, OPEN PENDING, OPEN,
    # MODIFY VALIDATION PENDING, MODIFY PENDING, MODIFIED, OPEN
    assert [o.status for o in history] == [
        OrderStatus.PENDING,
        OrderStatus.PENDING,
        OrderStatus.PENDING,
        OrderStatus.OPEN,
        OrderStatus.PENDING,
        OrderStatus.PENDING,
        OrderStatus.OPEN,
        OrderStatus.OPEN,
    ]
    assert history[-1].price == Decimal("300.1")
    assert history[0].placed_at == datetime(2017, 12, 29, 5, 36, 52, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kite_status", "expected"),
    [
        ("PUT ORDER REQ RECEIVED", OrderStatus.PENDING),
        ("AMO REQ RECEIVED", OrderStatus.PENDING),
        ("CANCEL PENDING", OrderStatus.PENDING),
        ("TRIGGER PENDING", OrderStatus.TRIGGER_PENDING),
        ("NOT MODIFIED", OrderStatus.OPEN),
        ("CANCELLED AMO", OrderStatus.CANCELLED),
        ("LAPSED", OrderStatus.CANCELLED),
        ("REJECTED", OrderStatus.REJECTED),
        ("SOMETHING NEW", OrderStatus.PENDING),
    ],
)
def test_parse_status_normalises_kite_vocabulary(kite_status, expected):
    assert parse.parse_status(kite_status) == expected


def test_parse_orders_skips_cover_order_product_with_warning(caplog):
    rows = fixture_json("orders.json")["data"][:2]
    rows[0] = {**rows[0], "product": "CO"}

    with caplog.at_level(logging.WARNING, logger="brokers.kite.parse"):
        orders = parse.parse_orders(rows)

    assert [o.order_id for o in orders] == ["300000000000000"]
    assert "CO" in caplog.text


# --- positions --------------------------------------------------------------------------------


def test_positions_json_net_book(server, broker, caplog):
    server.add("GET", "/portfolio/positions", Reply.fixture("positions.json"))

    with caplog.at_level(logging.WARNING, logger="brokers.kite.parse"):
        positions = broker.positions()

    assert [(p.tradingsymbol, p.product, p.quantity) for p in positions] == [
        ("LEADMINI17DECFUT", Product.NRML, 1),
        ("GOLDGUINEA17DECFUT", Product.NRML, 0),
    ]
    lead = positions[0]
    assert lead.key == InstrumentKey("MCX", "LEADMINI17DECFUT")
    assert (lead.average_price, lead.last_price) == (Decimal("161.05"), Decimal("161.05"))
    assert positions[1].unrealised_pnl == Decimal("801")
    assert "SBIN" in caplog.text  # the cover-order row is skipped, loudly


def test_parse_position_keeps_short_quantity_negative():
    row = {**fixture_json("positions.json")["data"]["net"][0], "quantity": -75, "realised": -12.5}

    position = parse.parse_position(row)

    assert position.quantity == -75
    assert position.realised_pnl == Decimal("-12.5")


# --- margins ----------------------------------------------------------------------------------


def test_order_margins_json_total_per_order(server, broker):
    server.add("POST", "/margins/orders", Reply.fixture("order_margins.json"))

    estimates = broker.order_margins([market_buy()])

    assert [e.total for e in estimates] == [Decimal("1498")]
    assert server.calls("POST", "/margins/orders")[0].json[0]["tradingsymbol"] == "INFY"


def test_basket_margins_json_uses_final_total(server, broker):
    server.add("POST", "/margins/basket", Reply.fixture("basket_margins.json"))

    estimate = broker.basket_margin([market_buy(exchange="NFO", tradingsymbol="NIFTY23JUL20600CE")])

    assert estimate.total == Decimal("34786.725")
    assert estimate.span == Decimal("7788")
    assert estimate.exposure == Decimal("29151.225")
    assert estimate.option_premium == Decimal("-2152.5")
    assert estimate.per_order == (Decimal("95983.725"), Decimal("521.25"))


# --- quotes -----------------------------------------------------------------------------------


def test_ltp_json_keyed_by_instrument(server, broker):
    server.add("GET", "/quote/ltp", Reply.fixture("ltp.json"))
    infy, gone = InstrumentKey("NSE", "INFY"), InstrumentKey("NSE", "DELISTED")

    prices = broker.ltp([infy, gone])

    assert prices == {infy: Decimal("1074.35")}  # Kite silently leaves unknown instruments out
    assert server.calls("GET", "/quote/ltp")[0].query["i"] == ["NSE:INFY", "NSE:DELISTED"]


# --- instruments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["instruments_all.csv", "instruments_nse.csv", "handmade/instruments_sample.csv"]
)
def test_parse_instruments_every_csv_row_via_sdk_parser(name):
    rows = KiteConnect("testkey")._parse_instruments(fixture_bytes(name))  # the SDK's own CSV parsing

    instruments = parse.parse_instruments(rows)

    assert len(instruments) == len(rows) > 0
    assert all(i.tick_size >= 0 and i.lot_size >= 0 for i in instruments)


def test_instruments_all_csv_option_row(server, broker):
    server.add("GET", "/instruments", Reply.fixture("instruments_all.csv"))

    by_key = {i.key: i for i in broker.instruments()}

    option = by_key[InstrumentKey("NFO", "BANKNIFTY18JAN23500CE")]
    assert option.instrument_type == InstrumentType.CE
    assert (option.lot_size, option.strike, option.tick_size) == (40, Decimal("23500"), Decimal("0.05"))
    assert option.expiry == datetime(2018, 1, 25, 10, 0, tzinfo=UTC)  # 15:30 IST on expiry day
    assert option.instrument_token == 12073986
    assert len(by_key) == 99


def test_instruments_sample_csv_types_and_expiries(server, broker):
    server.add("GET", "/instruments", Reply.fixture("handmade/instruments_sample.csv"))

    infy = broker.instrument(InstrumentKey("NSE", "INFY"))
    index = broker.instrument(InstrumentKey("NSE", "NIFTY 50"))
    future = broker.instrument(InstrumentKey("NFO", "NIFTY25AUGFUT"))
    mcx = broker.instrument(InstrumentKey("MCX", "GOLDPETAL21JUNFUT"))

    assert infy is not None
    assert (infy.instrument_type, infy.lot_size, infy.expiry) == (InstrumentType.EQ, 1, None)
    assert index is not None
    assert index.instrument_type == InstrumentType.INDEX
    assert future is not None
    assert (future.lot_size, future.underlying, future.last_price) == (75, "NIFTY", Decimal("24650.5"))
    assert future.expiry is not None
    assert future.expiry.date() == date(2025, 8, 28)
    assert mcx is not None
    assert mcx.expiry == datetime(2021, 6, 30, 18, 0, tzinfo=UTC)  # 23:30 IST
    assert broker.instrument(InstrumentKey("NSE", "NOSUCH")) is None
    assert len(server.calls("GET", "/instruments")) == 1


# --- writes: ids ------------------------------------------------------------------------------


def test_place_order_order_response_json_returns_id(server, broker):
    server.add("POST", "/orders/regular", Reply.fixture("order_response.json"))

    assert broker.place_order(market_buy()) == "151220000000000"


def test_modify_order_order_modify_json_returns_id(server, broker):
    server.add("PUT", "/orders/regular/151220000000000", Reply.fixture("order_modify.json"))

    assert broker.modify_order("151220000000000", price=Decimal("1500.5")) == "151220000000000"


def test_cancel_order_order_cancel_json_returns_id(server, broker):
    server.add("DELETE", "/orders/regular/151220000000000", Reply.fixture("order_cancel.json"))

    assert broker.cancel_order("151220000000000") == "151220000000000"


# --- errors through the SDK -------------------------------------------------------------------

# Every hand-made error payload, the HTTP status it is served with, and what a write and a read
# must raise. Max modifications: its status is unknown (fixtures README), so it is served both
# as 400 and as 503 below; it is OrderRejected(code="max_modifications") — permanent for that
# order (cancel and place anew), recognised by its text since Kite tags it NetworkException.
ERROR_CASES = {
    "error_token_403.json": (403, TokenExpired, TokenExpired),
    "error_ratelimit_429.json": (429, RateLimited, RateLimited),
    "error_input_400.json": (400, InputRejected, InputRejected),
    "error_margin_400.json": (400, OrderRejected, OrderRejected),
    "error_order_500.json": (500, OutcomeUnknown, BrokerUnavailable),
    "error_max_modifications.json": (400, OrderRejected, OrderRejected),
}


def test_error_cases_cover_every_handmade_error_fixture():
    on_disk = {p.name for p in Path(FIXTURES_DIR, "handmade").glob("error_*.json")}

    assert on_disk == set(ERROR_CASES)


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_place_order_maps_error_fixture(server, broker, name):
    status, write_error, _ = ERROR_CASES[name]
    server.add("POST", "/orders/regular", Reply.fixture(f"handmade/{name}", status=status))

    with pytest.raises(write_error) as caught:
        broker.place_order(market_buy())

    assert caught.value.http_status == status
    assert len(server.calls("POST", "/orders/regular")) == 1  # writes are never retried


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_funds_maps_error_fixture(server, broker, sleeps, name):
    status, _, read_error = ERROR_CASES[name]
    server.add("GET", "/user/margins", Reply.fixture(f"handmade/{name}", status=status))

    with pytest.raises(read_error):
        broker.funds()

    retried = read_error in (RateLimited, BrokerUnavailable)
    assert len(server.calls("GET", "/user/margins")) == (3 if retried else 1)
    assert len(sleeps) == (2 if retried else 0)


def test_place_order_rate_limited_is_sent_once(server, broker, sleeps):
    server.add("POST", "/orders/regular", Reply.fixture("handmade/error_ratelimit_429.json", status=429))

    with pytest.raises(RateLimited) as caught:
        broker.place_order(market_buy())

    assert caught.value.permanent is False
    assert len(server.calls("POST", "/orders/regular")) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [400, 503])
def test_modify_order_max_modifications_is_permanent_rejection(server, broker, status):
    server.add(
        "PUT",
        "/orders/regular/151220000000000",
        Reply.fixture("handmade/error_max_modifications.json", status=status),
    )

    with pytest.raises(OrderRejected) as caught:
        broker.modify_order("151220000000000", quantity=2)

    assert caught.value.code == MAX_MODIFICATIONS_CODE
    assert caught.value.permanent is True


@pytest.mark.parametrize(
    ("error_type", "status", "expected"),
    [
        ("PermissionException", 403, InputRejected),
        ("HoldingException", 428, OrderRejected),
        ("UserException", 400, OrderRejected),
        ("NetworkException", 503, OutcomeUnknown),
        ("DataException", 502, OutcomeUnknown),
        ("GeneralException", 504, OutcomeUnknown),
        ("MarginException", 500, OutcomeUnknown),  # a 5xx after the write was sent: unknown
    ],
)
def test_place_order_maps_other_error_types(server, broker, error_type, status, expected):
    server.add("POST", "/orders/regular", Reply.error(status, error_type, "refused"))

    with pytest.raises(expected):
        broker.place_order(market_buy())


def test_place_order_read_timeout_is_outcome_unknown(server, sleeps):
    broker = make_broker(server.root, sleeps, timeout=0.2)
    server.add("POST", "/orders/regular", Reply(body=fixture_json("order_response.json"), delay_s=1.0))

    with pytest.raises(OutcomeUnknown) as caught:
        broker.place_order(market_buy())

    assert isinstance(caught.value.__cause__, requests.ReadTimeout)
    assert len(server.calls("POST", "/orders/regular")) == 1


def test_place_order_dropped_connection_is_outcome_unknown(server, broker):
    server.add("POST", "/orders/regular", Reply(drop=True))

    with pytest.raises(OutcomeUnknown):
        broker.place_order(market_buy())


def test_place_order_connection_refused_is_unavailable_not_retried(sleeps):
    broker = make_broker(f"http://127.0.0.1:{unused_port()}", sleeps)

    with pytest.raises(BrokerUnavailable) as caught:
        broker.place_order(market_buy())

    assert "not sent" in str(caught.value)
    assert sleeps == []


def test_funds_connection_refused_retries_three_times(sleeps, monkeypatch):
    broker = make_broker(f"http://127.0.0.1:{unused_port()}", sleeps)
    session = broker._kite.reqsession
    attempts = []
    real_request = session.request

    def counting_request(*args, **kwargs):
        attempts.append(args[:2])
        return real_request(*args, **kwargs)

    monkeypatch.setattr(session, "request", counting_request)

    with pytest.raises(BrokerUnavailable):
        broker.funds()

    assert len(attempts) == 3
    assert len(sleeps) == 2


def test_funds_read_timeout_is_unavailable_after_retries(server, sleeps):
    broker = make_broker(server.root, sleeps, timeout=0.2)
    server.add("GET", "/user/margins", Reply(body=fixture_json("margins.json"), delay_s=1.0))

    with pytest.raises(BrokerUnavailable):
        broker.funds()

    assert len(server.calls("GET", "/user/margins")) == 3


def test_error_body_without_error_type_sdk_type_error_is_handled(server, broker):
    body = {"status": "error", "message": "Something broke"}  # the SDK raises TypeError on this
    server.add("POST", "/orders/regular", Reply(status=500, body=body))
    server.add("GET", "/orders", Reply(status=500, body=body))

    with pytest.raises(OutcomeUnknown) as on_write:
        broker.place_order(market_buy())
    with pytest.raises(BrokerUnavailable) as on_read:
        broker.orders()

    assert isinstance(on_write.value.__cause__, TypeError)
    assert isinstance(on_read.value.__cause__, TypeError)


def test_response_without_content_type_sdk_key_error_is_handled(server, broker):
    server.add("GET", "/orders", Reply(body=fixture_json("orders.json"), content_type=None))

    with pytest.raises(BrokerUnavailable) as caught:
        broker.orders()

    assert isinstance(caught.value.__cause__, KeyError)


def test_place_order_html_gateway_page_is_outcome_unknown(server, broker):
    server.add(
        "POST",
        "/orders/regular",
        Reply(status=502, body="<html>Bad gateway</html>", content_type="text/html"),
    )

    with pytest.raises(OutcomeUnknown):
        broker.place_order(market_buy())


def test_place_order_success_body_without_order_id_is_outcome_unknown(server, broker):
    server.add("POST", "/orders/regular", Reply.ok({}))

    with pytest.raises(OutcomeUnknown):
        broker.place_order(market_buy())


def test_orders_malformed_row_is_unavailable(server, broker):
    rows = fixture_json("orders.json")["data"]
    del rows[0]["quantity"]
    server.add("GET", "/orders", Reply.ok(rows))

    with pytest.raises(BrokerUnavailable):
        broker.orders()
