"""kite_sim over HTTP: Kite's envelopes and shapes (against kite/fixtures), auth, login, limits, faults."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from brokers.errors import OutcomeUnknown, RateLimited, TokenExpired
from brokers.paper.client import PaperBroker
from brokers.paper.models import PaperOrder
from brokers.types import InstrumentKey, OrderRequest, OrderStatus, OrderType, Product, Side
from lab.kite_sim.auth import Session, checksum
from lab.kite_sim.faults import OrderRateLimiter
from lab.kite_sim.server import KiteSim, RunningSim
from tests.engine_helpers import CALL, FUT, build_desk
from tests.kite_http import fixture_bytes, fixture_json
from tests.kite_sim_helpers import admin, running_sim, sim_broker, sim_session, start_sim

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running() -> Iterator[RunningSim]:
    build_desk()
    with running_sim() as sim:
        yield sim


@pytest.fixture
def c1(running) -> Session:
    return sim_session(running, "C1")


def call(running: RunningSim, session: Session | None, method: str, path: str, **kwargs: Any):
    headers = {"X-Kite-Version": "3"}
    if session is not None:
        headers["Authorization"] = f"token {session.api_key}:{session.access_token}"
    return requests.request(method, running.root + path, headers=headers, timeout=5, **kwargs)


def buy(symbol: str = FUT, quantity: int = 75, *, tag: str = "t1", **fields: Any) -> OrderRequest:
    return OrderRequest(
        "NFO",
        symbol,
        Side.BUY,
        quantity,
        Product.NRML,
        fields.pop("order_type", OrderType.MARKET),
        tag=tag,
        **fields,
    )


def form(tag: str = "t1", **fields: str) -> dict[str, str]:
    return {
        "exchange": "NFO",
        "tradingsymbol": FUT,
        "transaction_type": "BUY",
        "quantity": "75",
        "product": "NRML",
        "order_type": "MARKET",
        "market_protection": "-1",
        "tag": tag,
        **fields,
    }


def keys(payload: Any) -> set[str]:
    return set(payload)


def fixture_data(name: str) -> Any:
    return fixture_json(name)["data"]


# --- contract: envelopes and shapes equal to Zerodha's samples ----------------------------------


@pytest.fixture
def traded(running, c1) -> dict[str, str]:
    """C1 with a filled MARKET order, a resting LIMIT order and one position."""
    broker = sim_broker(running, "C1")
    filled = broker.place_order(buy(tag="fill1"))
    resting = broker.place_order(buy(tag="rest1", order_type=OrderType.LIMIT, price=Decimal("19000")))
    return {"filled": filled, "resting": resting}


def test_contract_every_read_route_is_a_success_envelope_shaped_like_the_fixtures(running, c1, traded):
    def data(path: str, **kwargs: Any) -> Any:
        response = call(running, c1, "GET", path, **kwargs)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert keys(body) == {"status", "data"} and body["status"] == "success"
        return body["data"]

    margins = data("/user/margins")
    sample = fixture_data("margins.json")
    assert keys(margins) == keys(sample)
    for segment in ("equity", "commodity"):
        assert keys(margins[segment]) == keys(sample[segment])
        assert keys(margins[segment]["available"]) == keys(sample[segment]["available"])
        assert keys(margins[segment]["utilised"]) == keys(sample[segment]["utilised"])
    assert keys(data("/user/margins/equity")) == keys(fixture_data("margins_equity.json"))
    assert keys(data("/user/margins/commodity")) == keys(fixture_data("margin_commodity.json"))
    assert keys(data("/user/profile")) == keys(fixture_data("profile.json"))

    orders = data("/orders")
    sample_orders = fixture_data("orders.json")
    common = set.intersection(*(keys(o) for o in sample_orders))
    every = set.union(*(keys(o) for o in sample_orders))
    assert [o["tag"] for o in orders] == ["fill1", "rest1"]
    for order in orders:
        assert common <= keys(order) <= every
    history = data(f"/orders/{traded['filled']}")
    assert keys(fixture_data("order_info.json")[0]) <= keys(history[0])
    trades = data(f"/orders/{traded['filled']}/trades")
    assert [keys(t) for t in trades] == [keys(fixture_data("order_trades.json")[0])]
    assert [keys(t) for t in data("/trades")] == [keys(fixture_data("trades.json")[0])]

    positions = data("/portfolio/positions")
    sample_positions = fixture_data("positions.json")
    assert keys(positions) == keys(sample_positions)
    assert [keys(p) for p in positions["net"]] == [keys(sample_positions["net"][0])]
    assert [keys(p) for p in positions["day"]] == [keys(sample_positions["day"][0])]
    assert data("/portfolio/holdings") == []

    params = {"i": [f"NFO:{FUT}", "NSE:NIFTY 50", "NSE:NOSUCH"]}
    quote = data("/quote", params=params)
    assert sorted(quote) == [f"NFO:{FUT}", "NSE:NIFTY 50"]  # unknown instruments are left out
    assert keys(quote[f"NFO:{FUT}"]) == keys(fixture_data("quote.json")["NSE:INFY"])
    assert keys(data("/quote/ltp", params=params)[f"NFO:{FUT}"]) == keys(fixture_data("ltp.json")["NSE:INFY"])
    assert keys(data("/quote/ohlc", params=params)[f"NFO:{FUT}"]) == keys(
        fixture_data("ohlc.json")["NSE:INFY"]
    )


def test_contract_instruments_csv_has_kites_columns_and_numbers(running, c1):
    response = call(running, c1, "GET", "/instruments")
    nfo = call(running, c1, "GET", "/instruments/NFO")

    assert response.headers["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(response.text)))
    sample_header = next(csv.reader(io.StringIO(fixture_bytes("instruments_all.csv").decode())))
    assert rows[0] == sample_header
    by_symbol = {row[2]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert by_symbol[FUT]["lot_size"] == "75" and by_symbol[FUT]["strike"] == "0.0"
    assert by_symbol[CALL]["strike"] == "20000.0" and by_symbol[CALL]["expiry"] == "2099-12-29"
    assert by_symbol["NIFTY 50"]["segment"] == "INDICES"
    assert {row[-1] for row in csv.reader(io.StringIO(nfo.text))} == {"exchange", "NFO"}


def test_contract_order_writes_and_margin_calculators_shaped_like_the_fixtures(running, c1, traded):
    placed = call(running, c1, "POST", "/orders/regular", data=form(tag="new1"))
    modified = call(running, c1, "PUT", f"/orders/regular/{traded['resting']}", data={"price": "19050"})
    cancelled = call(running, c1, "DELETE", f"/orders/regular/{traded['resting']}")
    body = [
        {
            "exchange": "NFO",
            "tradingsymbol": FUT,
            "transaction_type": "BUY",
            "variety": "regular",
            "product": "NRML",
            "order_type": "MARKET",
            "quantity": 75,
            "price": 0,
            "trigger_price": 0,
        }
    ]
    single = call(running, c1, "POST", "/margins/orders", json=body)
    basket = call(running, c1, "POST", "/margins/basket", params={"consider_positions": "true"}, json=body)

    assert keys(placed.json()["data"]) == keys(fixture_data("order_response.json"))
    assert keys(modified.json()["data"]) == keys(fixture_data("order_modify.json"))
    assert keys(cancelled.json()["data"]) == keys(fixture_data("order_cancel.json"))
    sample = fixture_data("order_margins.json")[0]
    (estimate,) = single.json()["data"]
    assert keys(estimate) == keys(sample)
    assert keys(estimate["charges"]) == keys(sample["charges"])
    assert estimate["total"] == 150000.0  # 10% of 75 x 20,000
    sample_basket = fixture_data("basket_margins.json")
    assert keys(basket.json()["data"]) == keys(sample_basket)
    assert keys(basket.json()["data"]["final"]) == keys(sample_basket["final"])


def test_contract_errors_carry_error_type_and_content_type(running, c1):
    unknown_token = call(running, None, "GET", "/user/margins")
    no_route = call(running, c1, "GET", "/mf/holdings")
    bad_quantity = call(running, c1, "POST", "/orders/regular", data=form(quantity="lots"))
    no_protection = call(running, c1, "POST", "/orders/regular", data=form(market_protection="0"))
    bad_symbol = call(running, c1, "POST", "/orders/regular", data=form(tradingsymbol="NOSUCHFUT"))

    assert unknown_token.status_code == 403
    assert keys(fixture_json("handmade/error_token_403.json")) <= keys(unknown_token.json())
    assert unknown_token.json()["error_type"] == "TokenException"
    for response, status in ((no_route, 404), (bad_quantity, 400), (no_protection, 400), (bad_symbol, 400)):
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["status"] == "error"
        assert response.json()["error_type"] in ("InputException", "GeneralException")
    assert "market protection" in no_protection.json()["message"]
    assert not PaperOrder.objects.exists()


# --- the adapter on the SDK reads the paper exchange through the simulator -----------------------


def test_kite_broker_sees_the_same_account_as_paper_broker(running, traded):
    kite = sim_broker(running, "C1")
    paper = PaperBroker("C1")

    assert kite.funds().used == paper.funds().used
    assert kite.funds().available == paper.funds().available
    assert kite.positions() == paper.positions()
    orders = kite.orders()
    assert [(o.order_id, o.tag, o.status, o.filled_quantity) for o in orders] == [
        (o.order_id, o.tag, o.status, o.filled_quantity) for o in paper.orders()
    ]
    assert orders[0].placed_at is not None and orders[0].placed_at.tzinfo is not None
    assert [h.status for h in kite.order_history(traded["filled"])] == [
        OrderStatus.PENDING,
        OrderStatus.PENDING,
        OrderStatus.PENDING,
        OrderStatus.OPEN,
        OrderStatus.COMPLETE,
    ]
    reqs = [buy(CALL, 150), OrderRequest("NFO", FUT, Side.SELL, 150, Product.NRML, OrderType.MARKET)]
    assert [e.total for e in kite.order_margins(reqs)] == [e.total for e in paper.order_margins(reqs)]
    assert kite.basket_margin(reqs).total == paper.basket_margin(reqs).total
    assert kite.instrument(InstrumentKey("NFO", FUT)).lot_size == 75
    assert kite.ltp([InstrumentKey("NFO", FUT), InstrumentKey("NFO", "NOSUCH")]) == {
        InstrumentKey("NFO", FUT): Decimal("20000")
    }


def test_margins_reflect_fills_debits_up_net_down(running, c1):
    before = call(running, c1, "GET", "/user/margins/equity").json()["data"]
    sim_broker(running, "C1").place_order(buy(quantity=150))
    after = call(running, c1, "GET", "/user/margins/equity").json()["data"]

    assert after["utilised"]["debits"] - before["utilised"]["debits"] == 300000.0
    assert before["net"] - after["net"] == 300000.0
    assert after["net"] + after["utilised"]["debits"] == 500000.0  # C1's capital


def test_unaffordable_order_is_accepted_then_rejected_in_the_book(running, c1):
    order_id = sim_broker(running, "C1").place_order(buy(quantity=750))  # needs 15 lakh, C1 has 5

    (order,) = call(running, c1, "GET", "/orders").json()["data"]
    assert (order["order_id"], order["status"]) == (order_id, "REJECTED")
    assert order["status_message"].startswith("Insufficient funds")
    assert order["exchange_order_id"] is None


# --- sessions and login ---------------------------------------------------------------------------


def test_login_flow_with_the_real_sdk_and_logout(running):
    admin(running.root, "POST", "/_sim/apps", json={"api_key": "appkey1", "api_secret": "appsecret1"})
    token = admin(running.root, "GET", "/_sim/login", params={"api_key": "appkey1", "user_id": "C2"})
    request_token = token.json()["data"]["request_token"]
    kite = KiteConnect("appkey1", root=running.root)

    session = kite.generate_session(request_token, api_secret="appsecret1")
    profile = kite.profile()
    logged_out = kite.invalidate_access_token()

    assert keys(session) == keys(fixture_data("generate_session.json"))
    assert logged_out is fixture_data("session_logout.json") is True
    assert (session["user_id"], profile["user_id"]) == ("C2", "C2")
    with pytest.raises(kex.TokenException):
        kite.profile()
    with pytest.raises(kex.TokenException):  # a request token works once
        KiteConnect("appkey1", root=running.root).generate_session(request_token, api_secret="appsecret1")


def test_login_with_a_wrong_secret_fails(running):
    admin(running.root, "POST", "/_sim/apps", json={"api_key": "appkey1", "api_secret": "appsecret1"})
    token = admin(running.root, "GET", "/_sim/login", params={"api_key": "appkey1", "user_id": "C2"})

    response = requests.post(
        running.root + "/session/token",
        data={
            "api_key": "appkey1",
            "request_token": token.json()["data"]["request_token"],
            "checksum": checksum("appkey1", token.json()["data"]["request_token"], "notthesecret"),
        },
        timeout=5,
    )

    assert (response.status_code, response.json()["error_type"]) == (403, "TokenException")


def test_connect_login_redirects_with_request_token_and_redirect_params(running):
    admin(
        running.root,
        "POST",
        "/_sim/apps",
        json={"api_key": "appkey1", "api_secret": "appsecret1", "redirect_url": "http://127.0.0.1:9/cb?x=1"},
    )
    page = requests.get(running.root + "/connect/login", params={"api_key": "appkey1", "v": "3"}, timeout=5)
    response = requests.get(
        running.root + "/connect/login",
        params={"api_key": "appkey1", "v": "3", "user_id": "C3", "redirect_params": "next=/a"},
        allow_redirects=False,
        timeout=5,
    )

    assert page.status_code == 200 and 'name="user_id"' in page.text
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    query = parse_qs(location.query)
    assert (location.netloc, location.path) == ("127.0.0.1:9", "/cb")
    assert (query["x"], query["next"], query["status"]) == (["1"], ["/a"], ["success"])
    request_token = query["request_token"][0]
    session = KiteConnect("appkey1", root=running.root).generate_session(
        request_token, api_secret="appsecret1"
    )
    assert session["user_id"] == "C3"


def test_admin_sessions_route_registers_a_token(running):
    created = admin(
        running.root, "POST", "/_sim/sessions", json={"user_id": "C4", "api_key": "k4", "access_token": "t4"}
    )
    kite = KiteConnect("k4", access_token="t4", root=running.root)

    assert created.json()["data"]["access_token"] == "t4"
    assert kite.margins("equity")["net"] == 3000000.0


# --- limits and faults ----------------------------------------------------------------------------


def test_order_writes_above_ten_per_second_get_kites_429(running, c1):
    running.sim.limiter = OrderRateLimiter(per_second=10, clock=lambda: 1000.0)  # all in one instant
    answers = [call(running, c1, "POST", "/orders/regular", data=form(tag=f"r{i}")) for i in range(12)]

    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 10 and statuses.count(429) == 2
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.json() == fixture_json("handmade/error_ratelimit_429.json")
    assert PaperOrder.objects.count() == 10  # a 429 placed nothing


def test_rate_limit_fault_is_rate_limited_for_the_adapter(running):
    running.sim.set_faults(user_id="C1", rate_limit={"count": 1})
    broker = sim_broker(running, "C1")

    with pytest.raises(RateLimited):
        broker.place_order(buy(tag="a1"))
    broker.place_order(buy(tag="a2"))

    assert list(PaperOrder.objects.values_list("tag", flat=True)) == ["a2"]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_error_after_place_is_outcome_unknown_and_the_order_exists(running, status):
    running.sim.set_faults(user_id="C1", error_after_place={"status": status})

    with pytest.raises(OutcomeUnknown) as unknown:
        sim_broker(running, "C1").place_order(buy(tag="u1"))

    assert unknown.value.http_status == status
    assert PaperOrder.objects.get().tag == "u1"


def test_timeout_after_place_is_outcome_unknown_and_the_order_exists(running):
    running.sim.set_faults(user_id="C1", timeout_after_place={"sleep_s": 1.5})
    broker = sim_broker(running, "C1", timeout=0.5)

    started = time.perf_counter()
    with pytest.raises(OutcomeUnknown):
        broker.place_order(buy(tag="slow1"))

    assert time.perf_counter() - started < 1.5  # the client gave up; the simulator was still waiting
    assert list(PaperOrder.objects.values_list("tag", flat=True)) == ["slow1"]


def test_late_book_hides_a_new_order_for_a_while(running):
    admin(running.root, "POST", "/_sim/faults", json={"user_id": "C1", "late_book_s": 1.5})
    broker = sim_broker(running, "C1")
    order_id = broker.place_order(buy(tag="late1"))

    hidden = broker.orders()
    time.sleep(1.6)
    shown = broker.orders()

    assert hidden == []
    assert [(o.order_id, o.tag) for o in shown] == [(order_id, "late1")]


def test_latency_fault_delays_answers(running, c1):
    admin(running.root, "POST", "/_sim/faults", json={"user_id": "C1", "latency_ms": 400})
    started = time.perf_counter()
    call(running, c1, "GET", "/user/profile")
    slow = time.perf_counter() - started
    admin(running.root, "DELETE", "/_sim/faults")
    started = time.perf_counter()
    call(running, c1, "GET", "/user/profile")

    assert slow >= 0.4
    assert time.perf_counter() - started < 0.4


def test_token_expiry_fault_is_token_expired_for_the_adapter(running):
    broker = sim_broker(running, "C1")
    broker.funds()
    admin(running.root, "POST", "/_sim/faults", json={"user_id": "C1", "expire_token": "now"})

    with pytest.raises(TokenExpired):
        broker.funds()


def test_faults_route_shows_and_refuses(running):
    accepted = admin(running.root, "POST", "/_sim/faults", json={"user_id": "C2", "rate_limit": {"count": 3}})
    refused = admin(running.root, "POST", "/_sim/faults", json={"rate_limit": "lots"})
    state = admin(running.root, "GET", "/_sim/faults").json()["data"]

    assert accepted.status_code == 200
    assert (refused.status_code, refused.json()["error_type"]) == (400, "InputException")
    assert state["accounts"]["C2"]["rate_limit"]["count"] == 3


def test_sim_configure_loads_apps_sessions_and_faults():
    sim = KiteSim(limiter=OrderRateLimiter(per_second=2))
    sim.configure(
        {
            "apps": [
                {"api_key": "appkey1", "api_secret": "appsecret1", "redirect_url": "http://127.0.0.1:8000/cb"}
            ],
            "sessions": [{"user_id": "C1", "api_key": "k1", "access_token": "t1"}],
            "faults": [{"user_id": "C1", "latency_ms": 5}],
        }
    )

    assert sim.store.authenticate("token k1:t1").user_id == "C1"
    assert sim.store.app("appkey1").redirect_url == "http://127.0.0.1:8000/cb"
    assert sim.faults.latency_s("C1") == 0.005


def test_start_sim_serves_and_stops():
    root, stop = start_sim()
    assert requests.get(root + "/_sim/health", timeout=5).json() == {
        "status": "success",
        "data": {"ok": True},
    }
    stop()

    assert root.startswith("http://127.0.0.1:")
    with pytest.raises(requests.ConnectionError):
        requests.get(root + "/_sim/health", timeout=2)
