"""KiteBroker behaviour: what goes on the wire, retries, the instrument cache, and secrecy."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from brokers.base import BrokerClient
from brokers.errors import BrokerUnavailable, InputRejected, RateLimited, TokenExpired
from brokers.kite.client import KiteBroker
from brokers.kite.instruments import InstrumentCache
from brokers.registry import BrokerCredentials, build_client
from brokers.types import InstrumentKey, OrderRequest, OrderType, Product, Side
from tests.kite_http import KiteHTTPServer, Recorded, Reply, unused_port

TOKEN = "SeCrEtAcCeSsToKeN42"


@pytest.fixture
def server():
    with KiteHTTPServer() as srv:
        srv.add("POST", "/orders/regular", Reply.fixture("order_response.json"))
        yield srv


@pytest.fixture
def sleeps():
    return []


def make_broker(root: str, sleeps: list[float] | None = None, **kwargs) -> KiteBroker:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("instrument_cache", InstrumentCache())
    return KiteBroker(
        api_key="testkey",
        access_token=TOKEN,
        root=root,
        sleep=(sleeps if sleeps is not None else []).append,
        **kwargs,
    )


@pytest.fixture
def broker(server, sleeps):
    return make_broker(server.root, sleeps)


def order(order_type: OrderType = OrderType.MARKET, **overrides) -> OrderRequest:
    fields = {
        "exchange": "NFO",
        "tradingsymbol": "NIFTY25AUGFUT",
        "side": Side.SELL,
        "quantity": 75,
        "product": Product.NRML,
        "order_type": order_type,
        "tag": "r7k2p9",
    }
    if order_type in (OrderType.LIMIT, OrderType.SL):
        fields["price"] = Decimal("24650.5")
    if order_type in (OrderType.SL, OrderType.SLM):
        fields["trigger_price"] = Decimal("24600")
    fields.update(overrides)
    return OrderRequest(**fields)


def sent_form(server: KiteHTTPServer) -> dict[str, str]:
    (request,) = server.calls("POST", "/orders/regular")
    return {key: values[0] for key, values in request.form.items()}


# --- place_order: what is sent ----------------------------------------------------------------


@pytest.mark.parametrize("order_type", [OrderType.MARKET, OrderType.SLM])
def test_place_order_market_and_slm_send_auto_market_protection(server, broker, order_type):
    broker.place_order(order(order_type))

    assert sent_form(server)["market_protection"] == "-1"


@pytest.mark.parametrize("order_type", [OrderType.LIMIT, OrderType.SL])
def test_place_order_limit_and_sl_send_no_market_protection(server, broker, order_type):
    broker.place_order(order(order_type, market_protection=5))

    assert "market_protection" not in sent_form(server)


def test_place_order_request_market_protection_overrides_default(server, broker):
    broker.place_order(order(market_protection=3))

    assert sent_form(server)["market_protection"] == "3"


def test_place_order_market_protection_from_settings(server):
    with override_settings(KITE_MARKET_PROTECTION=2):
        broker = make_broker(server.root)

    broker.place_order(order())

    assert sent_form(server)["market_protection"] == "2"


def test_place_order_sends_order_fields_and_tag(server, broker):
    order_id = broker.place_order(order(OrderType.SL))

    form = sent_form(server)
    assert order_id == "151220000000000"
    assert form["tag"] == "r7k2p9"
    assert (form["exchange"], form["tradingsymbol"], form["transaction_type"]) == (
        "NFO",
        "NIFTY25AUGFUT",
        "SELL",
    )
    assert (form["quantity"], form["product"], form["order_type"]) == ("75", "NRML", "SL")
    assert (form["price"], form["trigger_price"], form["validity"]) == ("24650.5", "24600", "DAY")
    request = server.calls("POST", "/orders/regular")[0]
    assert request.headers["Authorization"] == f"token testkey:{TOKEN}"
    assert request.headers["X-Kite-Version"] == "3"


def test_place_order_market_sends_no_price(server, broker):
    broker.place_order(order(price=Decimal("1")))

    assert "price" not in sent_form(server)


def test_place_order_algo_id_only_when_configured(server):
    make_broker(server.root).place_order(order())
    make_broker(server.root, algo_id="NSEALGO77").place_order(order())
    with override_settings(KITE_ALGO_ID="FROMSETTINGS"):
        make_broker(server.root).place_order(order())

    forms = [r.form for r in server.calls("POST", "/orders/regular")]
    assert "algo_id" not in forms[0]
    assert forms[1]["algo_id"] == ["NSEALGO77"]
    assert forms[2]["algo_id"] == ["FROMSETTINGS"]


@pytest.mark.parametrize(
    "bad",
    [
        {"tag": ""},
        {"tag": "has space"},
        {"tag": "x" * 21},
        {"quantity": 0},
        {"order_type": OrderType.LIMIT, "price": None},
        {"order_type": OrderType.SLM, "trigger_price": None},
    ],
)
def test_place_order_invalid_request_rejected_before_sending(server, broker, bad):
    with pytest.raises(InputRejected):
        broker.place_order(order(**bad))

    assert server.calls("POST", "/orders/regular") == []


def test_place_order_goes_through_proxy(server):
    # The proxy is the local server: an absolute-URL request line proves the SDK used it.
    broker = make_broker("http://kite.invalid", proxy_url=server.root)
    server.add("POST", "/orders/regular", Reply.fixture("order_response.json"))

    broker.place_order(order())

    (request,) = server.calls("POST", "/orders/regular")
    assert request.target == "http://kite.invalid/orders/regular"


# --- modify and cancel ------------------------------------------------------------------------


def test_modify_order_sends_only_given_fields(server, broker):
    server.add("PUT", "/orders/regular/99", Reply.ok({"order_id": "99"}))

    assert broker.modify_order("99", quantity=150, price=Decimal("101.25")) == "99"

    (request,) = server.calls("PUT", "/orders/regular/99")
    form = {k: v[0] for k, v in request.form.items()}
    assert (form["quantity"], form["price"]) == ("150", "101.25")
    assert "order_type" not in form
    assert "market_protection" not in form


def test_modify_order_to_market_sends_market_protection(server, broker):
    server.add("PUT", "/orders/regular/99", Reply.ok({"order_id": "99"}))

    broker.modify_order("99", order_type="MARKET")

    (request,) = server.calls("PUT", "/orders/regular/99")
    assert request.form["market_protection"] == ["-1"]


def test_cancel_order_uses_variety_in_path(server, broker):
    server.add("DELETE", "/orders/amo/77", Reply.ok({"order_id": "77"}))

    assert broker.cancel_order("77", variety="amo") == "77"
    assert len(server.calls("DELETE", "/orders/amo/77")) == 1


# --- margin calculators -----------------------------------------------------------------------


def test_basket_margin_sends_json_and_lowercase_consider_positions(server, broker):
    server.add("POST", "/margins/basket", Reply.fixture("basket_margins.json"))

    broker.basket_margin([order(OrderType.LIMIT), order(side=Side.BUY)])

    (request,) = server.calls("POST", "/margins/basket")
    assert request.query["consider_positions"] == ["true"]
    assert request.headers["Content-Type"] == "application/json"
    first, second = request.json
    assert (first["order_type"], first["price"], first["quantity"]) == ("LIMIT", 24650.5, 75)
    assert (second["transaction_type"], second["price"]) == ("BUY", 0)


def test_margins_of_no_orders_make_no_call(server, broker):
    assert broker.order_margins([]) == []
    assert broker.basket_margin([]).total == Decimal("0")
    assert server.requests == []


# --- retries ----------------------------------------------------------------------------------


def test_funds_retried_with_backoff_on_429_then_succeeds(server, sleeps):
    broker = make_broker(server.root, sleeps, rng=random.Random(7))
    limited = Reply.fixture("handmade/error_ratelimit_429.json", status=429)
    server.add("GET", "/user/margins", limited, limited, Reply.fixture("margins.json"))

    funds = broker.funds()

    assert funds.used == Decimal("145706.55")
    assert len(server.calls("GET", "/user/margins")) == 3
    first, second = sleeps
    assert 0.25 <= first <= 0.5  # base 0.5 s, equal jitter
    assert 0.5 <= second <= 1.0  # doubled


def test_funds_gives_up_after_three_rate_limited_attempts(server, sleeps, broker):
    server.add("GET", "/user/margins", Reply.fixture("handmade/error_ratelimit_429.json", status=429))

    with pytest.raises(RateLimited):
        broker.funds()

    assert len(server.calls("GET", "/user/margins")) == 3
    assert len(sleeps) == 2


def test_token_expired_read_is_not_retried(server, sleeps, broker):
    server.add("GET", "/orders", Reply.fixture("handmade/error_token_403.json", status=403))

    with pytest.raises(TokenExpired):
        broker.orders()

    assert len(server.calls("GET", "/orders")) == 1
    assert sleeps == []


def test_place_order_server_error_is_not_retried(server, sleeps, broker):
    server.add("POST", "/orders/regular", Reply.fixture("handmade/error_order_500.json", status=500))

    with pytest.raises(Exception, match="Order could not be placed"):
        broker.place_order(order())

    assert len(server.calls("POST", "/orders/regular")) == 1
    assert sleeps == []


# --- ltp batching -----------------------------------------------------------------------------


def test_ltp_batches_of_one_thousand(server, broker):
    def quote(request: Recorded) -> Reply:
        return Reply.ok({name: {"instrument_token": 1, "last_price": 10.5} for name in request.query["i"]})

    server.respond("GET", "/quote/ltp", quote)
    keys = [InstrumentKey("NSE", f"S{n}") for n in range(1001)]

    prices = broker.ltp(keys)

    assert [len(r.query["i"]) for r in server.calls("GET", "/quote/ltp")] == [1000, 1]
    assert prices[InstrumentKey("NSE", "S1000")] == Decimal("10.5")
    assert len(prices) == 1001


# --- instrument cache -------------------------------------------------------------------------


def test_instruments_downloaded_once_per_trading_day(server):
    now = [datetime(2025, 8, 7, 4, 0, tzinfo=UTC)]  # 09:30 IST
    broker = make_broker(server.root, instrument_cache=InstrumentCache(clock=lambda: now[0]))
    server.add("GET", "/instruments", Reply.fixture("handmade/instruments_sample.csv"))

    assert len(broker.instruments()) == 8
    assert broker.instrument(InstrumentKey("NFO", "NIFTY25AUGFUT")) is not None
    now[0] += timedelta(hours=21)  # 06:30 IST next day: before the new dump, keep the old one
    broker.instruments()
    downloads_before_rollover = len(server.calls("GET", "/instruments"))
    now[0] += timedelta(hours=3)  # 09:30 IST next day
    broker.instruments()

    assert downloads_before_rollover == 1
    assert len(server.calls("GET", "/instruments")) == 2


def test_instrument_cache_shared_between_accounts(server):
    cache = InstrumentCache()
    server.add("GET", "/instruments", Reply.fixture("handmade/instruments_sample.csv"))

    make_broker(server.root, instrument_cache=cache).instruments()
    make_broker(server.root, instrument_cache=cache).instruments()

    assert len(server.calls("GET", "/instruments")) == 1


# --- construction -----------------------------------------------------------------------------


def test_for_credentials_builds_a_broker_client_from_settings(server):
    creds = BrokerCredentials(broker="kite", user_id="AB1234", api_key="testkey", access_token=TOKEN)

    with override_settings(KITE_API_ROOT=server.root):
        client = build_client(creds)
    server.add("GET", "/user/margins", Reply.fixture("margins.json"))

    assert isinstance(client, KiteBroker)
    assert isinstance(client, BrokerClient)
    assert client.funds().used == Decimal("145706.55")
    assert client.timeout == 7.0
    assert TOKEN not in repr(client)


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_never_in_errors_or_logs(server, sleeps, broker, caplog):
    echo = {"status": "error", "error_type": "NetworkException", "message": f"upstream said {TOKEN}"}
    server.add("GET", "/user/margins", Reply(status=503, body=echo))
    server.add("POST", "/orders/regular", Reply(status=403, body={**echo, "error_type": "TokenException"}))

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(BrokerUnavailable) as read_error:
            broker.funds()
        with pytest.raises(TokenExpired) as write_error:
            broker.place_order(order())

    for error in (read_error.value, write_error.value):
        assert TOKEN not in str(error)
        assert "***" in str(error)
        assert error.__cause__ is None  # the SDK exception carried the token, so it is not chained
    assert caplog.records  # the retries and the failed write were logged...
    assert TOKEN not in caplog.text  # ...without the token


def test_proxy_credentials_never_in_errors(sleeps, caplog):
    proxy = f"http://pmsuser:PrOxYpAsS99@127.0.0.1:{unused_port()}"
    broker = make_broker("http://kite.invalid", sleeps, proxy_url=proxy)

    with caplog.at_level(logging.DEBUG), pytest.raises(BrokerUnavailable) as caught:
        broker.funds()

    assert "PrOxYpAsS99" not in str(caught.value)
    assert "PrOxYpAsS99" not in caplog.text
    assert len(sleeps) == 2


def test_connection_refused_read_message_says_not_sent(sleeps):
    broker = make_broker(f"http://127.0.0.1:{unused_port()}", sleeps)

    with pytest.raises(BrokerUnavailable, match="not sent"):
        broker.positions()


def _peak_in_flight(server, method: str, path: str, reply: Reply) -> list[int]:
    in_flight, peak = [0], [0]
    guard = threading.Lock()

    def slow(request: Recorded) -> Reply:
        with guard:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with guard:
            in_flight[0] -= 1
        return reply

    server.respond(method, path, slow)
    return peak


def test_writes_on_one_account_go_one_at_a_time(server, broker):
    peak = _peak_in_flight(server, "POST", "/orders/regular", Reply.fixture("order_response.json"))
    threads = [threading.Thread(target=broker.place_order, args=(order(),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(server.calls("POST", "/orders/regular")) == 4
    assert peak[0] == 1


def test_reads_on_one_account_may_overlap(server, broker):
    """The master's funds and order book go out together (issue 17): reads are not serialised."""
    peak = _peak_in_flight(server, "GET", "/user/margins", Reply.fixture("margins.json"))
    threads = [threading.Thread(target=broker.funds) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(server.calls("GET", "/user/margins")) == 4
    assert peak[0] > 1
