"""Issue 12 item 1, in one process: the lock-out's messages, its audit rows, the trusted client
address, and its end. Across two web processes: tests/test_security_throttle_processes.py."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts import security
from replication.models import ReplicationEvent
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pass-for-tests-only"
TOKEN_URL = "/api/v1/auth/token"


@pytest.fixture(autouse=True)
def no_counters():
    cache.clear()
    yield
    cache.clear()


def _token(username: str, password: str, **extra: str):
    return APIClient().post(TOKEN_URL, {"username": username, "password": password}, format="json", **extra)


def _form_login(path: str, username: str, password: str, **extra: str):
    return Client().post(path, {"username": username, "password": password}, **extra)


def test_api_lockout_refuses_the_right_password_with_429_and_retry_after():
    """Issue 12 item 1: after LOGIN_FAILURES_PER_ACCOUNT wrong passwords the token endpoint answers
    429 `login_locked` in the usual `{code, message, fields}` shape with Retry-After, even for the
    right password, and issues no token."""
    UserFactory(username="alice")
    limit = settings.LOGIN_FAILURES_PER_ACCOUNT
    assert [_token("alice", f"wrong{i}").status_code for i in range(limit)] == [400] * limit

    locked = _token("alice", PASSWORD)

    assert locked.status_code == 429
    assert locked.json() == {
        "code": "login_locked",
        "message": locked.json()["message"],
        "fields": {},
    }
    assert "Too many failed sign-ins for this account" in locked.json()["message"]
    assert 0 < int(locked["Retry-After"]) <= settings.LOGIN_LOCKOUT_SECONDS


def test_failures_are_audited_without_the_password():
    """Issue 12 item 1: every failed sign-in (API, product login, admin login) writes a
    `login.failed` audit row naming the username tried, the client address and the path, never the
    password; reaching the limit writes one `login.locked` row."""
    UserFactory(username="alice")
    _token("alice", "secret-guess-api")
    _form_login("/login/", "alice", "secret-guess-page")
    _form_login("/admin/login/", "alice", "secret-guess-admin")

    failed = list(ReplicationEvent.objects.filter(kind="login.failed").order_by("id"))
    assert [row.data["path"] for row in failed] == [TOKEN_URL, "/login/", "/admin/login/"]
    for row in failed:
        assert row.data["username"] == "alice"
        assert row.data["address"] == "127.0.0.1"
        assert "alice" in row.message
        text = f"{row.message} {row.actor} {row.data}"
        assert "secret-guess" not in text and "*****" not in text
    for i in range(settings.LOGIN_FAILURES_PER_ACCOUNT - 3):
        _token("alice", f"secret-guess-{i}")
    locked = ReplicationEvent.objects.filter(kind="login.locked")
    assert locked.count() == 1
    assert locked.get().data["scope"] == "account"
    # refused attempts while locked are not counted or audited again
    _token("alice", PASSWORD)
    assert ReplicationEvent.objects.filter(kind__startswith="login.").count() == (
        settings.LOGIN_FAILURES_PER_ACCOUNT + 1
    )


@override_settings(LOGIN_FAILURES_PER_ADDRESS=6)  # below the API's per-minute rate (10/min)
def test_forwarded_for_is_ignored_without_trusted_proxies():
    """Issue 12 item 1: with TRUSTED_PROXY_COUNT 0 (the default) the client address is REMOTE_ADDR;
    a client-made X-Forwarded-For changes nothing."""
    limit = settings.LOGIN_FAILURES_PER_ADDRESS
    for i in range(limit):
        _token(f"nobody{i}", "x", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}", REMOTE_ADDR="198.51.100.1")
    UserFactory(username="alice")

    locked = _token("alice", PASSWORD, REMOTE_ADDR="198.51.100.1")
    assert locked.status_code == 429 and locked.json()["code"] == "login_locked"
    assert _token("alice", PASSWORD, REMOTE_ADDR="198.51.100.2").status_code == 200


@override_settings(TRUSTED_PROXY_COUNT=1, LOGIN_FAILURES_PER_ADDRESS=6)
def test_one_trusted_proxy_takes_the_right_most_forwarded_for_entry():
    """Issue 12 item 1: behind one trusted proxy the client is the right-most X-Forwarded-For entry
    (the one the proxy appended); entries the client wrote itself to the left do not help."""
    limit = settings.LOGIN_FAILURES_PER_ADDRESS
    for i in range(limit):
        forwarded = f"203.0.113.{i}, 192.0.2.{i}, 198.51.100.7"
        _token(f"nobody{i}", "x", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="10.0.0.2")
    UserFactory(username="alice")

    blocked = _token("alice", PASSWORD, HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7", REMOTE_ADDR="10.0.0.2")
    other = _token("alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.8", REMOTE_ADDR="10.0.0.2")

    assert blocked.status_code == 429 and blocked.json()["code"] == "login_locked"
    assert "from your address" in blocked.json()["message"]
    assert other.status_code == 200
    row = ReplicationEvent.objects.filter(kind="login.failed").first()
    assert row is not None and row.data["address"] == "198.51.100.7"


@override_settings(LOGIN_FAILURES_PER_ADDRESS=6)
def test_ipv6_clients_are_counted_per_64_network():
    """Issue 12 item 1: an IPv6 client owns a whole /64, so addresses are counted per /64."""
    limit = settings.LOGIN_FAILURES_PER_ADDRESS
    for i in range(limit):
        _token(f"nobody{i}", "x", REMOTE_ADDR=f"2001:db8:1:2::{i + 1:x}")
    UserFactory(username="alice")

    locked = _token("alice", PASSWORD, REMOTE_ADDR="2001:db8:1:2:ffff::9")
    assert locked.status_code == 429 and locked.json()["code"] == "login_locked"
    assert _token("alice", PASSWORD, REMOTE_ADDR="2001:db8:1:3::1").status_code == 200


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_login_forms_lock_out_with_a_form_error(path):
    """Issue 12 item 1: the product login page and the admin login count failures per account;
    then the right password gets the form again with the lock-out message, and no session."""
    StaffFactory(username="boss")
    limit = settings.LOGIN_FAILURES_PER_ACCOUNT
    for i in range(limit - 1):
        assert _form_login(path, "boss", f"wrong{i}").status_code == 200
    last = _form_login(path, "boss", "wrong-last")
    assert "Too many failed sign-ins for this account" in last.content.decode()

    browser = Client()
    response = browser.post(path, {"username": "boss", "password": PASSWORD})

    assert response.status_code == 200
    assert "Too many failed sign-ins for this account" in response.content.decode()
    assert "_auth_user_id" not in browser.session


def test_failures_of_one_channel_count_for_the_others():
    """Issue 12 item 1: one count per account whatever the door: failures at the API, the product
    login and the admin login add up."""
    StaffFactory(username="boss")
    paths = [TOKEN_URL, "/login/", "/admin/login/"]
    for i in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        path = paths[i % 3]
        if path == TOKEN_URL:
            _token("boss", f"wrong{i}")
        else:
            _form_login(path, "boss", f"wrong{i}")

    assert _token("boss", PASSWORD).json()["code"] == "login_locked"


def test_usernames_are_counted_without_case_or_padding():
    """Issue 12 item 1: `Alice`, `alice ` and `alice` are one account to the counter."""
    UserFactory(username="alice")
    names = ["Alice", "alice ", "ALICE", " alice", "alice"]
    for i in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _token(names[i % len(names)], f"wrong{i}")

    assert _token("alice", PASSWORD).json()["code"] == "login_locked"


def test_the_lockout_ends_after_its_time(monkeypatch):
    """Issue 12 item 1: the lock-out lasts LOGIN_LOCKOUT_SECONDS; then the right password works."""
    UserFactory(username="alice")
    for i in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _token("alice", f"wrong{i}")
    assert _token("alice", PASSWORD).json()["code"] == "login_locked"

    real_now = security.now
    monkeypatch.setattr(security, "now", lambda: real_now() + settings.LOGIN_LOCKOUT_SECONDS + 1)

    assert _token("alice", PASSWORD).status_code == 200


@override_settings(LOGIN_FAILURES_PER_ACCOUNT=3)
def test_limits_are_settings():
    """Issue 12 item 1: LOGIN_FAILURES_PER_ACCOUNT sets how many failures lock an account."""
    UserFactory(username="alice")
    for i in range(3):
        _token("alice", f"wrong{i}")

    assert _token("alice", PASSWORD).json()["code"] == "login_locked"


def test_the_shared_cache_is_the_database_unless_redis_is_configured():
    """Issue 12 item 1: counters live in a cache every web process shares (the database cache by
    default), never in a per-process memory cache."""
    backend = settings.CACHES["default"]["BACKEND"]
    assert backend == "django.core.cache.backends.db.DatabaseCache"
    cache.set("probe", 1, 60)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {settings.CACHES['default']['LOCATION']}")  # noqa: S608
        assert cursor.fetchone()[0] >= 1


def test_staff_can_lift_a_lockout_and_it_is_audited():
    """Issue 12 item 1: `login_unlock` (the runbook's shell line) ends a lock-out at once."""
    UserFactory(username="alice")
    for i in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _token("alice", f"wrong{i}")
    assert _token("alice", PASSWORD).status_code == 429

    security.login_unlock(username="alice", actor="staff-on-call")

    assert _token("alice", PASSWORD).status_code == 200
    row = ReplicationEvent.objects.get(kind="login.unlocked")
    assert row.actor == "staff-on-call" and row.data["username"] == "alice"
