"""kite_sim pieces without a database: sessions, faults, the order-write limiter, routing, payload helpers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from lab.kite_sim.auth import AuthError, SessionStore, checksum, next_expiry
from lab.kite_sim.faults import Faults, FaultSpecError, OrderRateLimiter
from lab.kite_sim.payloads import csv_number, ist
from lab.kite_sim.routes import resolve
from lab.kite_sim.server import KiteSim, check_loopback
from lab.kite_sim.wire import KiteError, Request


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


# --- sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now_utc", "expected_utc"),
    [
        (datetime(2025, 8, 7, 4, 0, tzinfo=UTC), datetime(2025, 8, 8, 0, 30, tzinfo=UTC)),  # 09:30 IST
        (datetime(2025, 8, 7, 0, 29, tzinfo=UTC), datetime(2025, 8, 7, 0, 30, tzinfo=UTC)),  # 05:59 IST
        (datetime(2025, 8, 7, 0, 30, tzinfo=UTC), datetime(2025, 8, 8, 0, 30, tzinfo=UTC)),  # 06:00 IST
    ],
)
def test_next_expiry_is_the_first_six_am_ist_after(now_utc, expected_utc):
    assert next_expiry(now_utc) == expected_utc


def test_checksum_is_sha256_of_the_concatenation():
    assert checksum("key", "req", "secret") == hashlib.sha256(b"keyreqsecret").hexdigest()


def test_session_store_exchange_checks_checksum_and_uses_token_once():
    clock = Clock(datetime(2025, 8, 7, 4, 0, tzinfo=UTC))
    store = SessionStore(clock=clock)
    store.register_app(api_key="appkey", api_secret="appsecret")
    token = store.issue_request_token(api_key="appkey", user_id="C1")

    with pytest.raises(AuthError) as bad:
        store.exchange(api_key="appkey", request_token=token, checksum_hex="0" * 64)
    session = store.exchange(
        api_key="appkey", request_token=token, checksum_hex=checksum("appkey", token, "appsecret")
    )
    with pytest.raises(AuthError) as reused:
        store.exchange(
            api_key="appkey", request_token=token, checksum_hex=checksum("appkey", token, "appsecret")
        )

    assert bad.value.error_type == "TokenException"
    assert reused.value.message == "Token is invalid or has expired."
    assert session.user_id == "C1"
    assert session.expires_at == datetime(2025, 8, 8, 0, 30, tzinfo=UTC)
    assert store.authenticate(f"token appkey:{session.access_token}") is session


def test_session_store_request_token_expires_after_minutes():
    clock = Clock(datetime(2025, 8, 7, 4, 0, tzinfo=UTC))
    store = SessionStore(clock=clock)
    store.register_app(api_key="appkey", api_secret="appsecret")
    token = store.issue_request_token(api_key="appkey", user_id="C1")
    clock.now += timedelta(minutes=6)

    with pytest.raises(AuthError):
        store.exchange(
            api_key="appkey", request_token=token, checksum_hex=checksum("appkey", token, "appsecret")
        )


def test_session_store_token_dies_at_six_am_ist():
    clock = Clock(datetime(2025, 8, 7, 10, 0, tzinfo=UTC))
    store = SessionStore(clock=clock)
    session = store.create(user_id="C1", api_key="k1", access_token="t1")
    header = "token k1:t1"
    assert store.authenticate(header) is session

    clock.now = datetime(2025, 8, 8, 0, 30, tzinfo=UTC)  # 06:00 IST the next morning
    with pytest.raises(AuthError) as dead:
        store.authenticate(header)
    assert (dead.value.status, dead.value.error_type) == (403, "TokenException")


@pytest.mark.parametrize("header", [None, "", "token k1", "token :t1", "Bearer k1:t1", "token k1:wrong"])
def test_session_store_rejects_bad_authorization(header):
    store = SessionStore()
    store.create(user_id="C1", api_key="k1", access_token="t1")

    with pytest.raises(AuthError):
        store.authenticate(header)


def test_session_store_expire_one_user_only():
    store = SessionStore()
    store.create(user_id="C1", api_key="k1", access_token="t1")
    store.create(user_id="C2", api_key="k2", access_token="t2")

    assert store.expire(user_id="C1") == 1
    with pytest.raises(AuthError):
        store.authenticate("token k1:t1")
    assert store.authenticate("token k2:t2").user_id == "C2"


def test_session_repr_hides_tokens():
    session = SessionStore().create(user_id="C1", api_key="k1", access_token="sekrit-token")
    assert "sekrit-token" not in repr(session)


# --- faults -----------------------------------------------------------------------------------


def test_faults_counted_rate_limit_is_used_up():
    faults = Faults()
    faults.set(user_id="C1", rate_limit={"count": 2})

    gates = [faults.on_order_write("C1").rate_limited for _ in range(3)]

    assert gates == [True, True, False]
    assert faults.on_order_write("C2").rate_limited is False


def test_faults_account_scope_used_before_global():
    faults = Faults()
    faults.set(error_after_place={"status": 500, "count": 1})
    faults.set(user_id="C1", error_after_place={"status": 503, "count": 1})

    statuses = [faults.after_accept("C1").error_status for _ in range(3)]

    assert statuses == [503, 500, None]


def test_faults_latency_account_overrides_global():
    faults = Faults()
    faults.set(latency_ms=100)
    faults.set(user_id="C1", latency_ms=20)

    assert (faults.latency_s("C1"), faults.latency_s("C2"), faults.latency_s(None)) == (0.02, 0.1, 0.1)


def test_faults_probability_is_repeatable_with_a_seed():
    def run() -> list[bool]:
        faults = Faults()
        faults.set(user_id="C1", rate_limit={"count": 50, "probability": 0.5}, seed=42)
        return [faults.on_order_write("C1").rate_limited for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert 5 < sum(first) < 35


def test_faults_timeout_after_place_then_normal():
    faults = Faults()
    faults.set(user_id="C1", timeout_after_place={"sleep_s": 1.5})

    assert faults.after_accept("C1").sleep_s == 1.5
    assert faults.after_accept("C1").sleep_s == 0


def test_faults_expire_on_order_write_fires_once_per_account():
    faults = Faults()
    faults.set(expire_token="on_order_write")

    assert [faults.on_order_write(u).expire_token for u in ("C1", "C1", "C2")] == [True, False, True]


@pytest.mark.parametrize(
    "spec",
    [
        {"latency": 5},
        {"latency_ms": "fast"},
        {"latency_ms": -1},
        {"rate_limit": 3},
        {"rate_limit": {"count": -1}},
        {"rate_limit": {"count": 1, "probability": 2}},
        {"error_after_place": {"status": 418}},
        {"expire_token": "later"},
        {"seed": "x"},
    ],
)
def test_faults_reject_bad_specs(spec):
    with pytest.raises(FaultSpecError):
        Faults().set(**spec)


def test_faults_clear_and_state():
    faults = Faults()
    faults.set(user_id="C1", late_book_s=2, rate_limit={"count": 1})
    assert faults.state()["accounts"]["C1"]["late_book_s"] == 2

    faults.clear(user_id="C1")

    assert faults.state()["accounts"] == {}
    assert faults.late_book_s("C1") == 0


def test_order_rate_limiter_ten_per_second_per_account():
    now = [100.0]
    limiter = OrderRateLimiter(per_second=10, clock=lambda: now[0])

    allowed = [limiter.allow("C1") for _ in range(11)]
    other = limiter.allow("C2")
    now[0] += 1.01
    later = limiter.allow("C1")

    assert allowed == [True] * 10 + [False]
    assert other is True
    assert later is True


def test_order_rate_limiter_per_minute():
    now = [0.0]
    limiter = OrderRateLimiter(per_second=10, per_minute=15, clock=lambda: now[0])
    allowed = []
    for _ in range(20):
        allowed.append(limiter.allow("C1"))
        now[0] += 0.5

    assert allowed.count(True) == 15


# --- routing, errors, helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/orders", "/orders"),
        ("GET", "/orders/123", "/orders/{order_id}"),
        ("POST", "/orders/regular", "/orders/{variety}"),
        ("PUT", "/orders/regular/123", "/orders/{variety}/{order_id}"),
        ("GET", "/orders/123/trades", "/orders/{order_id}/trades"),
        ("GET", "/user/margins/equity", "/user/margins/{segment}"),
        ("GET", "/instruments/NFO", "/instruments/{exchange}"),
        ("GET", "/quote/", "/quote"),
    ],
)
def test_resolve_routes(method, path, route):
    assert resolve(method, path)[0].path == route


def test_resolve_unknown_path_404_and_wrong_method_405():
    with pytest.raises(KiteError) as missing:
        resolve("GET", "/mf/orders")
    with pytest.raises(KiteError) as wrong:
        resolve("PATCH", "/orders")

    assert (missing.value.status, missing.value.error_type) == (404, "GeneralException")
    assert (wrong.value.status, wrong.value.error_type) == (405, "GeneralException")


def test_kite_sim_unauthenticated_call_is_403_token_exception_with_content_type():
    response = KiteSim().handle(Request("GET", "/user/margins", headers={"x-kite-version": "3"}))

    assert (response.status, response.content_type) == (403, "application/json")
    assert response.data()["error_type"] == "TokenException"


def test_kite_sim_admin_faults_bad_json_is_input_exception():
    response = KiteSim().handle(Request("POST", "/_sim/faults", body=b"{nope"))

    assert response.status == 400
    assert response.data() == {
        "status": "error",
        "message": "The request body is not valid JSON.",
        "error_type": "InputException",
        "data": None,
    }


def test_kite_sim_admin_expire_now_kills_sessions():
    sim = KiteSim()
    sim.store.create(user_id="C1", api_key="k1", access_token="t1")
    ok = sim.handle(Request("GET", "/user/profile", headers={"authorization": "token k1:t1"}))

    sim.handle(Request("POST", "/_sim/faults", body=b'{"user_id": "C1", "expire_token": "now"}'))
    dead = sim.handle(Request("GET", "/user/profile", headers={"authorization": "token k1:t1"}))

    assert ok.data()["data"]["user_id"] == "C1"
    assert dead.status == 403


@pytest.mark.parametrize(
    ("value", "text"), [(Decimal("0"), "0.0"), (Decimal("0.0500"), "0.05"), (20000, "20000.0")]
)
def test_csv_number_always_has_a_decimal_point(value, text):
    assert csv_number(value) == text


def test_ist_formats_aware_utc_as_ist_wall_clock():
    assert ist(datetime(2025, 8, 7, 3, 46, 39, tzinfo=UTC)) == "2025-08-07 09:16:39"


@pytest.mark.parametrize("host", ["0.0.0.0", "8.8.8.8"])  # noqa: S104  (refusing these is the point)
def test_check_loopback_refuses_other_addresses(host):
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_check_loopback_accepts_loopback(host):
    assert check_loopback(host) == host
