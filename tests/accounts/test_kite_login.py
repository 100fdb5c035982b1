"""Kite daily login: redirect, callback, kite_login command, the real SDK exchange, the pre-open check."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from django_q.models import Schedule

from accounts.models import Account, AccountStatus, Broker
from accounts.services import kite_token_expiry
from brokers.errors import InputRejected, TokenExpired
from brokers.kite import session as kite_session
from brokers.kite.session import SessionResult, exchange_request_token, login_url
from lab.kite_sim.server import start as start_sim
from replication.login_check import accounts_needing_login, login_check_task, session_deadline
from replication.models import ReplicationEvent
from replication.tasks import SCHEDULES, sync_schedules
from tests.factories import KiteAccountFactory, StaffFactory, UserFactory
from tests.kite_http import KiteHTTPServer, Reply, fixture_json

pytestmark = pytest.mark.django_db

IST = ZoneInfo("Asia/Kolkata")
NEW_TOKEN = "freshaccesstoken0123456789"


@dataclass
class FakeExchange:
    """Stands in for brokers.kite.session.exchange_request_token."""

    user_id: str = "AB1234"
    error: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, **kwargs: Any) -> SessionResult:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return SessionResult(access_token=NEW_TOKEN, user_id=self.user_id, login_time=datetime.now(UTC))


@pytest.fixture
def exchange(monkeypatch: pytest.MonkeyPatch) -> FakeExchange:
    fake = FakeExchange()
    monkeypatch.setattr(kite_session, "exchange_request_token", fake)
    return fake


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def account(owner) -> Account:
    return KiteAccountFactory(
        broker_user_id="AB1234",
        owner=owner,
        status=AccountStatus.NEEDS_LOGIN,
        access_token="",
        api_key="kiteapikey01",
        api_secret="kiteapisecret0123456789",
    )


def start_login(client, account: Account) -> dict[str, str]:
    """Follow the login redirect; returns the redirect_params Kite would hand back."""
    response = client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    return {k: v[0] for k, v in parse_qs(query["redirect_params"][0]).items()}


def callback(client, **params: str):
    return client.get(reverse("kite:callback"), params)


def raw_token(account: Account) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM accounts_account WHERE id = %s", [account.pk])
        return str(cursor.fetchone()[0])


# --- login redirect ----------------------------------------------------------------------------


def test_login_url_is_kites_v3_url():
    url = login_url("kiteapikey01")
    assert url == "https://kite.zerodha.com/connect/login?v=3&api_key=kiteapikey01"


def test_kite_login_redirects_staff_to_kite_with_state(client, account):
    client.force_login(StaffFactory())
    response = client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 302
    parts = urlsplit(response["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://kite.zerodha.com/connect/login"
    query = parse_qs(parts.query)
    assert query["v"] == ["3"]
    assert query["api_key"] == ["kiteapikey01"]
    passed = parse_qs(query["redirect_params"][0])
    assert passed["account"] == [str(account.pk)]
    assert client.session["kite_login_states"] == {passed["state"][0]: account.pk}


@override_settings(KITE_LOGIN_URL="http://127.0.0.1:8100/_sim/login")
def test_kite_login_lets_the_owner_in_and_uses_the_configured_login_url(client, account, owner):
    client.force_login(owner)
    response = client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith("http://127.0.0.1:8100/_sim/login?v=3&api_key=kiteapikey01")


def test_kite_login_hides_the_account_from_other_users(client, account):
    client.force_login(UserFactory())
    assert client.get(reverse("kite:login", args=[account.pk])).status_code == 404


def test_kite_login_sends_anonymous_users_to_the_login_page(client, account):
    response = client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_kite_login_refuses_paper_accounts(client):
    paper = KiteAccountFactory(broker=Broker.PAPER, api_key="", api_secret="", access_token="")
    client.force_login(StaffFactory())
    assert client.get(reverse("kite:login", args=[paper.pk])).status_code == 404


def test_kite_login_without_api_key_shows_why(client):
    account = KiteAccountFactory(api_key="")
    client.force_login(StaffFactory())
    response = client.get(reverse("kite:login", args=[account.pk]))
    assert response.status_code == 400
    assert b"no api_key" in response.content


# --- callback ----------------------------------------------------------------------------------


def test_kite_callback_stores_the_token_encrypted_until_the_next_0600_ist(client, account, owner, exchange):
    client.force_login(owner)
    params = start_login(client, account)
    before = datetime.now(UTC)
    response = callback(client, request_token="reqtoken123", action="login", status="success", **params)
    after = datetime.now(UTC)

    assert response.status_code == 200
    assert b"Kite login complete" in response.content
    assert NEW_TOKEN.encode() not in response.content
    assert exchange.calls == [
        {
            "api_key": "kiteapikey01",
            "api_secret": "kiteapisecret0123456789",
            "request_token": "reqtoken123",
            "root": "https://api.kite.trade",
            "proxy_url": "",
        }
    ]
    account.refresh_from_db()
    assert account.secret("access_token") == NEW_TOKEN
    assert NEW_TOKEN not in raw_token(account)  # encrypted at rest
    assert account.status == AccountStatus.ACTIVE
    assert account.token_expires_at in {kite_token_expiry(before), kite_token_expiry(after)}
    assert account.token_expires_at.astimezone(IST).time() == time(6, 0)
    assert timedelta(0) < account.token_expires_at - before <= timedelta(hours=24)
    event = ReplicationEvent.objects.get(account=account, kind="account.credentials_changed")
    assert event.actor == f"kite-login:{owner.username}"
    assert NEW_TOKEN not in str(event.data) and NEW_TOKEN not in event.message
    assert event.data["access_token"] == {"before": "", "after": "***"}


def test_kite_callback_refuses_a_login_as_another_zerodha_user(client, account, exchange):
    exchange.user_id = "ZZ9999"
    client.force_login(StaffFactory())
    params = start_login(client, account)
    response = callback(client, request_token="reqtoken123", status="success", **params)
    assert response.status_code == 400
    assert b"ZZ9999" in response.content
    account.refresh_from_db()
    assert account.access_token == ""
    assert account.status == AccountStatus.NEEDS_LOGIN
    assert not ReplicationEvent.objects.filter(account=account).exists()


def test_kite_callback_cancelled_changes_nothing(client, account, exchange):
    client.force_login(StaffFactory())
    params = start_login(client, account)
    response = callback(client, action="login", status="cancelled", **params)
    assert response.status_code == 200
    assert b"cancelled" in response.content
    assert exchange.calls == []
    account.refresh_from_db()
    assert account.status == AccountStatus.NEEDS_LOGIN and account.access_token == ""


def test_kite_callback_refuses_a_login_not_started_in_this_session(client, account, exchange):
    client.force_login(StaffFactory())
    response = callback(
        client, request_token="reqtoken123", status="success", account=str(account.pk), state="forged"
    )
    assert response.status_code == 400
    assert exchange.calls == []


def test_kite_callback_state_works_once(client, account, exchange):
    client.force_login(StaffFactory())
    params = start_login(client, account)
    assert callback(client, request_token="reqtoken123", status="success", **params).status_code == 200
    assert callback(client, request_token="reqtoken123", status="success", **params).status_code == 400
    assert len(exchange.calls) == 1


def test_kite_callback_shows_kites_refusal_and_changes_nothing(client, account, exchange):
    exchange.error = TokenExpired("TokenException (HTTP 403): Token is invalid or has expired.")
    client.force_login(StaffFactory())
    params = start_login(client, account)
    response = callback(client, request_token="reqtoken123", status="success", **params)
    assert response.status_code == 400
    assert b"Token is invalid or has expired" in response.content
    account.refresh_from_db()
    assert account.access_token == "" and account.status == AccountStatus.NEEDS_LOGIN


def test_kite_callback_keeps_a_paused_account_paused(client, account, exchange):
    Account.objects.filter(pk=account.pk).update(status=AccountStatus.PAUSED)
    client.force_login(StaffFactory())
    params = start_login(client, account)
    assert callback(client, request_token="reqtoken123", status="success", **params).status_code == 200
    account.refresh_from_db()
    assert account.status == AccountStatus.PAUSED
    assert account.secret("access_token") == NEW_TOKEN


# --- the real SDK against a local server --------------------------------------------------------


def test_exchange_request_token_posts_kites_checksum_and_parses_the_session():
    with KiteHTTPServer() as server:
        server.add("POST", "/session/token", Reply(body=fixture_json("generate_session.json")))
        result = exchange_request_token(
            api_key="kiteapikey01",
            api_secret="kiteapisecret01",
            request_token="reqtoken123",
            root=server.root,
        )
        (sent,) = server.calls("POST", "/session/token")
    expected = hashlib.sha256(b"kiteapikey01reqtoken123kiteapisecret01").hexdigest()
    assert sent.form == {
        "api_key": ["kiteapikey01"],
        "request_token": ["reqtoken123"],
        "checksum": [expected],
    }
    assert result.user_id == "XX0000"
    assert result.access_token == "XXXXXX"
    assert result.login_time == datetime(2021, 1, 1, 10, 45, 14, tzinfo=UTC)  # 16:15:14 IST
    assert "XXXXXX" not in repr(result)


def test_exchange_request_token_maps_kites_errors_without_leaking_the_secret():
    with KiteHTTPServer() as server:
        server.add("POST", "/session/token", Reply.fixture("handmade/error_token_403.json", status=403))
        with pytest.raises(TokenExpired) as expired:
            exchange_request_token(
                api_key="k1", api_secret="secret-s3cr3t", request_token="r1x", root=server.root
            )
        server.add(
            "POST", "/session/token", Reply.error(400, "InputException", "Invalid checksum secret-s3cr3t")
        )
        with pytest.raises(InputRejected) as rejected:
            exchange_request_token(
                api_key="k1", api_secret="secret-s3cr3t", request_token="r1x", root=server.root
            )
    assert "secret-s3cr3t" not in str(expired.value) + str(rejected.value)
    assert expired.value.__cause__ is None


# --- kite_login command ------------------------------------------------------------------------


def run_kite_login(*args: str, stdin: io.StringIO | None = None, monkeypatch=None) -> str:
    out = io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", stdin)
    call_command("kite_login", *args, stdout=out)
    return out.getvalue()


def test_kite_login_command_prints_the_url_and_no_secret(account, exchange):
    output = run_kite_login(str(account.pk))
    assert "https://kite.zerodha.com/connect/login?v=3&api_key=kiteapikey01" in output
    assert "--request-token" in output
    assert "kiteapisecret" not in output
    assert exchange.calls == []


def test_kite_login_command_exchanges_the_request_token(account, exchange):
    output = run_kite_login(str(account.pk), "--request-token", "reqtoken123")
    account.refresh_from_db()
    assert account.secret("access_token") == NEW_TOKEN
    assert account.status == AccountStatus.ACTIVE
    assert NEW_TOKEN not in output and "kiteapisecret" not in output
    assert "logged in" in output
    assert exchange.calls[0]["request_token"] == "reqtoken123"


def test_kite_login_command_accepts_the_pasted_redirect_address(account, exchange):
    redirect = (
        "https://pms.example.com/accounts/kite/callback/?action=login&status=success&request_token=abc123XYZ"
    )
    run_kite_login(str(account.pk), "--request-token", redirect)
    assert exchange.calls[0]["request_token"] == "abc123XYZ"


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_kite_login_command_reads_the_token_interactively(account, exchange, monkeypatch):
    output = run_kite_login(str(account.pk), stdin=TTY("reqtoken456\n"), monkeypatch=monkeypatch)
    assert "Paste the request_token" in output
    assert exchange.calls[0]["request_token"] == "reqtoken456"
    account.refresh_from_db()
    assert account.secret("access_token") == NEW_TOKEN


def test_kite_login_command_refuses_the_wrong_user(account, exchange):
    exchange.user_id = "ZZ9999"
    with pytest.raises(CommandError, match="ZZ9999"):
        run_kite_login(str(account.pk), "--request-token", "reqtoken123")
    account.refresh_from_db()
    assert account.access_token == ""


def test_kite_login_command_rejects_a_malformed_token_before_calling_kite(account, exchange):
    with pytest.raises(CommandError, match="request token"):
        run_kite_login(str(account.pk), "--request-token", "bad token!")
    assert exchange.calls == []


# --- pre-open login check ----------------------------------------------------------------------

MONDAY_0845_IST = datetime(2026, 3, 2, 8, 45, tzinfo=IST)


def ist(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=IST).astimezone(UTC)


def test_session_deadline_is_the_next_open_outside_a_session_and_now_inside_one():
    assert session_deadline(MONDAY_0845_IST) == ist(2, 9, 15)
    at_ten = datetime(2026, 3, 2, 10, 0, tzinfo=IST)
    assert session_deadline(at_ten) == at_ten.astimezone(UTC)
    friday_evening = datetime(2026, 3, 6, 16, 0, tzinfo=IST)
    assert session_deadline(friday_evening) == ist(9, 9, 15)  # Monday
    saturday = datetime(2026, 3, 7, 11, 0, tzinfo=IST)
    assert session_deadline(saturday) == ist(9, 9, 15)


@pytest.fixture
def fleet() -> dict[str, Account]:
    """Kite accounts in every login state, at Monday 08:45 IST."""
    return {
        "fresh": KiteAccountFactory(token_expires_at=ist(3, 6)),  # logged in this morning
        "stale": KiteAccountFactory(token_expires_at=ist(2, 6)),  # yesterday's token
        "flagged": KiteAccountFactory(token_expires_at=ist(3, 6), status=AccountStatus.NEEDS_LOGIN),
        "empty": KiteAccountFactory(access_token="", token_expires_at=None),
        "disabled": KiteAccountFactory(token_expires_at=ist(2, 6), status=AccountStatus.DISABLED),
        "paused": KiteAccountFactory(token_expires_at=ist(1, 6), status=AccountStatus.PAUSED),
        "paper": KiteAccountFactory(broker=Broker.PAPER, api_key="", api_secret="", access_token=""),
    }


def test_accounts_needing_login_lists_enabled_kite_accounts_without_a_session_at_the_open(fleet):
    needing = accounts_needing_login(MONDAY_0845_IST)
    assert [a.pk for a in needing] == [fleet[k].pk for k in ("stale", "flagged", "empty", "paused")]


@override_settings(
    EMAIL_HOST="smtp.example.com", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"
)
def test_login_check_task_audits_each_account_and_emails_staff_once(fleet):
    staff = StaffFactory(email="ops@example.com")
    StaffFactory(email="")
    UserFactory(email="client@example.com")
    summary = login_check_task(MONDAY_0845_IST)
    assert summary == "4 Kite account(s) need a login (staff emailed)"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [staff.email]
    assert "4 Kite accounts need a login" in message.subject
    assert f"/accounts/{fleet['stale'].pk}/kite/login/" in message.body
    assert fleet["fresh"].broker_user_id not in message.body
    events = ReplicationEvent.objects.filter(kind="account.login_needed")
    assert sorted(e.account_id for e in events) == sorted(
        fleet[k].pk for k in ("stale", "flagged", "empty", "paused")
    )


@override_settings(EMAIL_HOST="", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
def test_login_check_task_sends_no_email_when_mail_is_not_configured(fleet):
    StaffFactory(email="ops@example.com")
    assert login_check_task(MONDAY_0845_IST) == "4 Kite account(s) need a login"
    assert mail.outbox == []
    assert ReplicationEvent.objects.filter(kind="account.login_needed").count() == 4


def test_sync_schedules_runs_the_login_check_daily_at_0845_ist():
    sync_schedules()
    schedule = Schedule.objects.get(func="replication.tasks.login_check_task")
    assert schedule.schedule_type == Schedule.DAILY
    local = schedule.next_run.astimezone(IST)
    assert local.time() == time(8, 45)
    assert timedelta(0) < schedule.next_run - datetime.now(UTC) <= timedelta(days=1)
    assert "kite pre-open login check" in SCHEDULES


# --- end to end against the Kite simulator (real SDK, real redirects) ----------------------------


def test_daily_login_end_to_end_against_the_kite_simulator(client, account, owner):
    running = start_sim()
    try:
        running.sim.store.register_app(
            api_key="kiteapikey01",
            api_secret="kiteapisecret0123456789",
            redirect_url="http://testserver/accounts/kite/callback/",
            user_id="AB1234",
        )
        client.force_login(owner)
        with override_settings(KITE_LOGIN_URL=f"{running.root}/connect/login", KITE_API_ROOT=running.root):
            to_kite = client.get(reverse("kite:login", args=[account.pk]))
            from_kite = requests.get(to_kite["Location"], allow_redirects=False, timeout=5)
            assert from_kite.status_code in (301, 302, 303, 307)
            back = urlsplit(from_kite.headers["Location"])
            assert back.path == reverse("kite:callback")
            response = client.get(f"{back.path}?{back.query}")
    finally:
        running.stop()
    assert response.status_code == 200, response.content
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert account.secret("access_token")
