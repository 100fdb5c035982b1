"""The Kite SDK's HTTP sessions (brokers.kite.egress): one connection pool per egress route,
shared by accounts and kept across client rebuilds; an explicit proxy_url is its own route; the
environment's proxy is read once per route, not on every call."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.kite import egress
from brokers.kite.client import KiteBroker, forget_sdk_clients
from brokers.kite.instruments import InstrumentCache
from brokers.types import InstrumentKey, OrderRequest, OrderType, Product, Side
from tests.kite_http import KiteHTTPServer, Reply


@pytest.fixture(autouse=True)
def fresh_routes(monkeypatch):
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    egress.reset()
    forget_sdk_clients()
    yield
    egress.reset()
    forget_sdk_clients()


@pytest.fixture
def server():
    with KiteHTTPServer() as srv:
        srv.add("POST", "/orders/regular", Reply.fixture("order_response.json"))
        yield srv


def broker(root: str, n: int = 0, **kwargs) -> KiteBroker:
    return KiteBroker(
        api_key=f"key{n}",
        access_token=f"token{n:04d}",
        root=root,
        timeout=2.0,
        instrument_cache=InstrumentCache(),
        **kwargs,
    )


def order(tag: str = "t1") -> OrderRequest:
    return OrderRequest(
        exchange="NFO",
        tradingsymbol="NIFTY25AUGFUT",
        side=Side.BUY,
        quantity=75,
        product=Product.NRML,
        order_type=OrderType.LIMIT,
        price=Decimal("100.5"),
        tag=tag,
    )


def connections_opened(root: str) -> int:
    adapter = egress.session_for(root).get_adapter(root)
    return sum(pool.num_connections for pool in adapter.poolmanager.pools._container.values())


def test_accounts_on_one_route_share_one_kept_alive_connection(server):
    for n in range(5):
        broker(server.root, n).place_order(order(f"t{n}"))
    broker(server.root, 0).place_order(order("again"))  # a rebuilt client of account 0

    calls = server.calls("POST", "/orders/regular")
    assert [c.headers["Authorization"] for c in calls] == [
        *(f"token key{n}:token{n:04d}" for n in range(5)),
        "token key0:token0000",
    ]
    assert [c.form["tag"] for c in calls] == [["t0"], ["t1"], ["t2"], ["t3"], ["t4"], ["again"]]
    assert connections_opened(server.root) == 1
    assert egress.routes() == 1


def test_an_account_with_a_proxy_url_has_its_own_route_through_the_proxy(server):
    direct = broker(server.root, 1)
    proxied = broker("http://kite.invalid", 2, proxy_url=server.root)
    direct.place_order(order("direct"))
    proxied.place_order(order("proxied"))

    targets = [c.target for c in server.calls("POST", "/orders/regular")]
    assert targets == ["/orders/regular", "http://kite.invalid/orders/regular"]
    assert egress.routes() == 2


def test_the_environments_proxy_is_used_and_read_once_per_route(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.root)
    broker("http://kite.invalid", 1).place_order(order("viaenv"))
    assert server.calls("POST", "/orders/regular")[0].target == "http://kite.invalid/orders/regular"


def test_without_an_environment_proxy_the_route_goes_direct_and_stays_so(server, monkeypatch):
    b = broker(server.root, 1)
    b.place_order(order("first"))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # read once: a later change is not seen
    b.place_order(order("second"))
    assert [c.target for c in server.calls("POST", "/orders/regular")] == ["/orders/regular"] * 2


def test_reads_with_query_lists_and_json_bodies_go_out_as_requests_would_send_them(server):
    server.add("GET", "/quote/ltp", Reply.ok({"NFO:A": {"instrument_token": 1, "last_price": 10.5}}))
    server.add("POST", "/margins/orders", Reply.fixture("order_margins.json"))
    b = broker(server.root, 1)
    b.ltp([InstrumentKey("NFO", "A"), InstrumentKey("NFO", "B")])
    b.order_margins([order()])

    (ltp,) = server.calls("GET", "/quote/ltp")
    assert ltp.query["i"] == ["NFO:A", "NFO:B"]
    (margins,) = server.calls("POST", "/margins/orders")
    assert margins.headers["Content-Type"] == "application/json"
    assert margins.json[0]["tradingsymbol"] == "NIFTY25AUGFUT"
