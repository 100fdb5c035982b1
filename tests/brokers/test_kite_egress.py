"""The Kite SDK's HTTP sessions (brokers.kite.egress): one connection pool per egress route,
shared by accounts and kept across client rebuilds; an explicit proxy_url is its own route; the
environment's proxy is read once per route, not on every call."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

import pytest
import requests
import urllib3.exceptions as u3
from hypothesis import given
from hypothesis import strategies as st

from brokers.errors import BrokerUnavailable, OutcomeUnknown
from brokers.kite import egress
from brokers.kite.client import KiteBroker, forget_sdk_clients
from brokers.kite.errors import translate
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


# The direct path: a plain call goes straight to the adapter's urllib3 pool (issue 17: the
# requests layers were a third of a place_order's CPU). What reaches the server and how a failure
# is judged (sent or not) must stay what requests would give.


def test_a_plain_call_skips_the_requests_send_machinery(server, monkeypatch):
    def no_send(*args, **kwargs):
        raise AssertionError("requests.Session.send called on the direct path")

    monkeypatch.setattr(requests.Session, "send", no_send)
    order_id = broker(server.root, 1).place_order(order("direct"))

    assert order_id == "151220000000000"
    (call,) = server.calls("POST", "/orders/regular")
    assert call.form["tag"] == ["direct"]
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert int(call.headers["Content-Length"]) == len(call.body)
    assert call.headers["Authorization"] == "token key1:token0001"


def test_a_redirect_answering_an_order_is_not_followed_and_the_outcome_is_unknown(server):
    server.add(
        "POST",
        "/orders/regular",
        Reply(status=307, content_type="text/html", headers=(("Location", "/orders/amo"),)),
    )
    server.add("POST", "/orders/amo", Reply.fixture("order_response.json"))

    with pytest.raises(OutcomeUnknown):
        broker(server.root, 1).place_order(order("moved"))

    assert len(server.calls("POST", "/orders/regular")) == 1
    assert server.calls("POST", "/orders/amo") == []  # never sent twice by the transport


def test_a_pool_closed_by_the_pool_manager_is_looked_up_again_and_the_order_sent_once(server):
    b = broker(server.root, 1)
    b.place_order(order("first"))
    session = egress.session_for(server.root)
    session.get_adapter(server.root).poolmanager.clear()  # evicts and closes every pool
    b.place_order(order("second"))

    assert [c.form["tag"] for c in server.calls("POST", "/orders/regular")] == [["first"], ["second"]]


def _pool():
    from urllib3 import HTTPConnectionPool

    return HTTPConnectionPool("127.0.0.1", 9)


@pytest.mark.parametrize(
    ("failure", "kind", "sent"),
    [
        (
            lambda: u3.MaxRetryError(_pool(), "/", u3.NewConnectionError(None, "refused")),
            requests.ConnectionError,
            False,
        ),
        (
            lambda: u3.MaxRetryError(_pool(), "/", u3.ConnectTimeoutError("slow connect")),
            requests.ConnectTimeout,
            False,
        ),
        (lambda: u3.ClosedPoolError(_pool(), "closed"), requests.ConnectionError, True),
        (lambda: u3.ReadTimeoutError(_pool(), "/", "read timed out"), requests.ReadTimeout, True),
        (
            lambda: u3.ProtocolError("Connection aborted.", ConnectionResetError()),
            requests.ConnectionError,
            True,
        ),
        (lambda: ConnectionResetError("reset"), requests.ConnectionError, True),
        (
            lambda: u3.MaxRetryError(_pool(), "/", u3.ProxyError("proxy", OSError())),
            requests.exceptions.ProxyError,
            True,
        ),
        (lambda: u3.SSLError("bad certificate"), requests.exceptions.SSLError, True),
        (
            lambda: u3.MaxRetryError(_pool(), "/", u3.ResponseError("too many")),
            requests.exceptions.RetryError,
            True,
        ),
    ],
)
def test_urllib3_failures_become_the_requests_errors_and_verdicts_requests_would_give(failure, kind, sent):
    """A write is judged "not sent" only when the connection was never made; every other failure
    of a write is an unknown outcome (looked up by tag, never re-sent)."""
    mapped = egress._requests_error(failure())

    assert type(mapped) is kind
    verdict = translate(mapped, write=True)
    if sent:
        assert isinstance(verdict, OutcomeUnknown)
    else:
        assert type(verdict) is BrokerUnavailable
        assert "not sent" in str(verdict)


_form_values = st.one_of(
    st.text(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.lists(st.one_of(st.text(), st.integers()), max_size=3),
)


@given(st.dictionaries(st.one_of(st.text(), st.integers()), _form_values, max_size=8))
def test_form_encoding_is_urlencode_byte_for_byte(data):
    assert egress.form_encode(data) == urlencode(data, doseq=True)
