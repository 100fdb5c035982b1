"""The Kite SDK's HTTP sessions (brokers.kite.egress): one connection pool per egress route,
shared by accounts and kept across client rebuilds; an explicit proxy_url is its own route; the
environment's proxy is read once per route, not on every call."""

from __future__ import annotations

import gzip
import json
import time
from decimal import Decimal
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from brokers.errors import BrokerUnavailable, OutcomeUnknown
from brokers.kite import egress
from brokers.kite.client import KiteBroker, forget_sdk_clients
from brokers.kite.instruments import InstrumentCache
from brokers.types import InstrumentKey, OrderRequest, OrderType, Product, Side
from tests.kite_http import KiteHTTPServer, Reply, fixture_json


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
    return sum(origin.opened for origin in egress.session_for(root).origins())


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


def test_a_connection_the_server_closed_while_idle_is_not_used_and_the_order_goes_once():
    """Servers close idle kept-alive connections; the next order must not be written into one
    (it would come back as an unknown outcome): it is checked before use and a new one made."""
    with KiteHTTPServer(idle_timeout_s=0.2) as srv:
        srv.add("POST", "/orders/regular", Reply.fixture("order_response.json"))
        b = broker(srv.root, 1)
        b.place_order(order("first"))
        time.sleep(0.6)  # the server has closed the idle connection by now
        b.place_order(order("second"))

        assert [c.form["tag"] for c in srv.calls("POST", "/orders/regular")] == [["first"], ["second"]]
        assert connections_opened(srv.root) == 2


def test_a_connection_the_server_asks_to_close_is_not_kept(server):
    server.add(
        "POST",
        "/orders/regular",
        Reply(body=fixture_json("order_response.json"), headers=(("Connection", "close"),)),
        Reply.fixture("order_response.json"),
    )
    b = broker(server.root, 1)
    b.place_order(order("first"))
    b.place_order(order("second"))
    assert len(server.calls("POST", "/orders/regular")) == 2
    assert connections_opened(server.root) == 2


def test_a_connect_timeout_is_not_sent(server, monkeypatch):
    import http.client

    def slow_connect(self):
        raise TimeoutError("timed out")

    monkeypatch.setattr(http.client.HTTPConnection, "connect", slow_connect)
    with pytest.raises(BrokerUnavailable, match="not sent"):
        broker(server.root, 1).place_order(order("never"))
    assert server.calls("POST", "/orders/regular") == []


def test_a_gzip_answer_is_decoded(server):
    body = gzip.compress(json.dumps(fixture_json("order_response.json")).encode())
    server.add("POST", "/orders/regular", Reply(body=body, headers=(("Content-Encoding", "gzip"),)))
    assert broker(server.root, 1).place_order(order("zipped")) == "151220000000000"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


def _tls_server(tls_files):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return KiteHTTPServer(tls=context)


def test_https_with_the_ca_bundle_named_by_the_environment(tls_files, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files[0])
    egress.reset()
    with _tls_server(tls_files) as srv:
        srv.add("POST", "/orders/regular", Reply.fixture("order_response.json"))
        b = broker(srv.root, 1)
        assert b.place_order(order("tls1")) == "151220000000000"
        assert b.place_order(order("tls2")) == "151220000000000"
        assert len(srv.calls("POST", "/orders/regular")) == 2
        assert connections_opened(srv.root) == 1  # kept alive over TLS too


def test_https_with_a_certificate_nobody_trusts_sends_nothing(tls_files):
    egress.reset()
    with _tls_server(tls_files) as srv:
        srv.add("POST", "/orders/regular", Reply.fixture("order_response.json"))
        with pytest.raises(OutcomeUnknown) as caught:  # as requests: an SSLError is not "not sent"
            broker(srv.root, 1).place_order(order("untrusted"))
        assert "SSLError" in str(caught.value)
        assert srv.calls("POST", "/orders/regular") == []


# --- the HTTP/1.1 exchange on a kept-alive connection (egress.Origin) -------------------------


class RawServer:
    """A loopback server answering each request on a connection with the next of `answers`
    (bytes, written in `pieces` separate writes), recording what it received."""

    def __init__(self, *answers: bytes, pieces: int = 1, close_after: bool = False) -> None:
        import socket
        import threading

        self.answers = list(answers)
        self.pieces = pieces
        self.close_after = close_after
        self.received: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.root = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while self.answers:
                    request = self._request(conn)
                    if request is None:
                        break
                    self.received.append(request)
                    answer = self.answers.pop(0)
                    step = max(1, len(answer) // self.pieces)
                    for start in range(0, len(answer), step):
                        conn.sendall(answer[start : start + step])
                        time.sleep(0.01)
                    if self.close_after:
                        break

    @staticmethod
    def _request(conn) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += conn.recv(65536)
        return head + b"\r\n\r\n" + rest

    def close(self) -> None:
        self.sock.close()


ORDER_BODY = json.dumps(fixture_json("order_response.json")).encode()


def _answer(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def test_a_chunked_answer_in_many_pieces_is_read_whole():
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (ORDER_BODY[:10], ORDER_BODY[10:]))
        + b"0\r\n\r\n"
    )
    srv = RawServer(
        _answer(
            "HTTP/1.1 200 OK", "Content-Type: application/json", "Transfer-Encoding: chunked", body=chunked
        ),
        _answer(
            "HTTP/1.1 200 OK",
            "Content-Type: application/json",
            f"Content-Length: {len(ORDER_BODY)}",
            body=ORDER_BODY,
        ),
        pieces=7,
    )
    try:
        b = broker(srv.root, 1)
        assert b.place_order(order("chunked")) == "151220000000000"
        assert b.place_order(order("after")) == "151220000000000"  # same connection, in step
    finally:
        srv.close()
    assert connections_opened(srv.root) == 1
    first = srv.received[0].decode("latin-1")
    assert first.startswith("POST /orders/regular HTTP/1.1\r\n")
    head = first.split("\r\n\r\n")[0].lower()
    assert f"host: {srv.root.removeprefix('http://')}" in head and "x-kite-version: 3" in head
    assert "tag=chunked" in first.split("\r\n\r\n")[1]


def test_an_interim_100_continue_is_skipped_and_an_http_1_0_answer_read_to_its_close():
    srv = RawServer(
        _answer("HTTP/1.1 100 Continue")
        + _answer("HTTP/1.0 200 OK", "Content-Type: application/json", body=ORDER_BODY),
        close_after=True,
    )
    try:
        assert broker(srv.root, 1).place_order(order("old")) == "151220000000000"
    finally:
        srv.close()
    origin = egress.session_for(srv.root).origins()[0]
    assert origin._idle == []  # read to its close: not kept


def test_an_early_hints_answer_is_skipped_and_the_final_answer_read():
    srv = RawServer(
        _answer("HTTP/1.1 103 Early Hints", "Link: </style.css>; rel=preload")
        + _answer(
            "HTTP/1.1 200 OK",
            "Content-Type: application/json",
            f"Content-Length: {len(ORDER_BODY)}",
            body=ORDER_BODY,
        )
    )
    try:
        assert broker(srv.root, 1).place_order(order("hinted")) == "151220000000000"
    finally:
        srv.close()


@pytest.mark.parametrize(
    "answer",
    [
        # a status code of non-ASCII digits (latin-1 '²' is a digit to str.isdigit)
        b"HTTP/1.1 2\xb20 OK\r\nContent-Length: 0\r\n\r\n",
        # a length no reader can take
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4611686018427387904\r\n\r\n",
        # an answer cut short: fewer bytes than its length says, then the close
        _answer("HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(ORDER_BODY)}")
        + ORDER_BODY[:20],
    ],
)
def test_a_malformed_answer_is_an_unknown_outcome_never_a_resend_and_its_connection_dropped(answer):
    srv = RawServer(answer, close_after=True)
    try:
        with pytest.raises(OutcomeUnknown):
            broker(srv.root, 1).place_order(order("odd"))
    finally:
        srv.close()
    assert len(srv.received) == 1
    assert egress.session_for(srv.root).origins()[0]._idle == []


def test_an_answer_switching_protocols_is_not_kept():
    srv = RawServer(_answer("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"))
    try:
        reply = egress.session_for(srv.root).request("GET", srv.root + "/orders", timeout=2)
    finally:
        srv.close()
    assert reply.status_code == 101 and reply.content == b""
    assert egress.session_for(srv.root).origins()[0]._idle == []


def test_a_transfer_coding_other_than_chunked_is_read_to_the_close_whatever_its_length_says():
    """RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; not ending in chunked, the body
    runs to the close. Trusting the length would leave the rest to be read as the next answer."""
    srv = RawServer(
        _answer(
            "HTTP/1.1 200 OK",
            "Content-Type: application/json",
            "Transfer-Encoding: identity",
            "Content-Length: 4",
            body=ORDER_BODY,
        ),
        close_after=True,
    )
    try:
        assert broker(srv.root, 1).place_order(order("coded")) == "151220000000000"
    finally:
        srv.close()
    assert egress.session_for(srv.root).origins()[0]._idle == []


@pytest.mark.parametrize(
    "target",
    # a header smuggled in (urlsplit drops the CR LF, the space stays), then beyond ASCII
    ["/orders/1\r\nX-Evil: 1", "/orders/\u00e9", "/orders/\x85", "/orders/\u20ac"],
)
def test_a_request_target_not_printable_ascii_is_refused_before_anything_is_sent(target):
    srv = RawServer(_answer("HTTP/1.1 200 OK", "Content-Length: 0"))
    try:
        with pytest.raises(requests.exceptions.InvalidURL):
            egress.session_for(srv.root).request("GET", srv.root + target, timeout=2)
    finally:
        srv.close()
    assert srv.received == []


def test_a_header_value_that_cannot_be_written_is_refused_before_anything_is_sent():
    srv = RawServer(_answer("HTTP/1.1 200 OK", "Content-Length: 0"))
    try:
        with pytest.raises(requests.exceptions.InvalidHeader):
            egress.session_for(srv.root).request(
                "GET", srv.root + "/orders", headers={"X-Name": "\u20ac"}, timeout=2
            )
    finally:
        srv.close()
    assert srv.received == []
