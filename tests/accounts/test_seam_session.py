"""Issue 15: the accounts app asks the broker's capabilities about its session, never its name.

A token's expiry is the broker's (Kite 06:00 IST the next morning, Angel One midnight IST); an
account is made active only with a live session or, for a headless login, what the server logs
in with; the API's `login_required` and `login_url` are about an interactive (redirect) login.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker
from accounts.services import account_link, account_set_credentials, account_set_status
from accounts.validation import AccountError
from brokers import capabilities
from brokers.capabilities import Session, SessionKind, capabilities_for
from tests.api_helpers import API, API_KEY
from tests.factories import AccountFactory, KiteAccountFactory

pytestmark = pytest.mark.django_db

IST = ZoneInfo("Asia/Kolkata")
# 14:30 IST on a Wednesday: Kite's token dies at 06:00 IST tomorrow, Angel's at midnight tonight.
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
KITE_EXPIRY = datetime(2026, 12, 3, 6, 0, tzinfo=IST).astimezone(UTC)
ANGEL_EXPIRY = datetime(2026, 12, 3, 0, 0, tzinfo=IST).astimezone(UTC)
ANGEL_TOKEN = "eyJhbGciOiJIUzUxMiJ9.angelsessiontoken0001"


def _angel(**fields: object) -> Account:
    defaults: dict[str, object] = {
        "broker": Broker.ANGEL,
        "broker_user_id": "A123456",
        "api_key": "angelkey01",
    }
    return AccountFactory(**{**defaults, **fields})


@pytest.fixture
def at_now(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)


def test_seam_session_angel_token_stored_without_expiry_dies_at_midnight_ist(at_now):
    account = account_set_credentials(account=_angel(), actor="ops", access_token=ANGEL_TOKEN)

    assert account.token_obtained_at == NOW
    assert account.token_expires_at == ANGEL_EXPIRY


def test_seam_session_kite_token_still_dies_at_six_ist(at_now):
    account = account_set_credentials(account=KiteAccountFactory(), actor="ops", access_token="k" * 32)

    assert account.token_expires_at == KITE_EXPIRY


def test_seam_session_angel_linked_with_a_token_dies_at_midnight_ist(at_now):
    account, created = account_link(
        broker=Broker.ANGEL, user_id="a765432", api_key="angelkey02", access_token=ANGEL_TOKEN, actor="ops"
    )

    assert created
    assert account.token_expires_at == ANGEL_EXPIRY


def test_seam_session_angel_activated_without_a_session_or_a_login_is_refused():
    account = _angel(status=AccountStatus.NEEDS_LOGIN, access_token="")

    with pytest.raises(AccountError) as refused:
        account_set_status(account=account, status=AccountStatus.ACTIVE, actor="ops")

    assert refused.value.code == "needs_login"
    assert "Angel One" in refused.value.message
    account.refresh_from_db()
    assert account.status == AccountStatus.NEEDS_LOGIN


def test_seam_session_angel_with_pin_and_totp_is_activated_the_server_logs_in():
    account = _angel(
        status=AccountStatus.NEEDS_LOGIN, access_token="", pin="1234", totp_secret="JBSWY3DPEHPK3PXP"
    )

    assert account_set_status(account=account, status=AccountStatus.ACTIVE, actor="ops").status == "active"


def test_seam_session_paper_activated_without_any_token():
    account = AccountFactory(status=AccountStatus.PAUSED)

    assert account_set_status(account=account, status=AccountStatus.ACTIVE, actor="ops").status == "active"


@pytest.fixture
def angel_redirect():
    """Angel One as if its login were a daily redirect (a broker kind the API must not name)."""
    angel = capabilities_for(Broker.ANGEL)
    capabilities.register(replace(angel, session=Session(SessionKind.DAILY_REDIRECT, expires_at=time(6, 0))))
    yield
    capabilities.unregister(Broker.ANGEL)


def test_seam_session_api_login_required_and_url_follow_an_interactive_session(people, angel_redirect):
    response = people.as_staff.post(
        f"{API}/accounts/link",
        {"broker": "angel", "user_id": "A555001", "api_key": API_KEY, "owner": "alice"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["account"]["login_required"] is True
    assert body["login_url"] == f"/accounts/{body['account']['id']}/angel/login/"


def test_seam_session_api_headless_session_needs_no_login_url(people):
    response = people.as_staff.post(
        f"{API}/accounts/link",
        {
            "broker": "angel",
            "user_id": "A555002",
            "api_key": API_KEY,
            "owner": "alice",
            "access_token": "eyJangel.session.token",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["account"]["login_required"], body["login_url"]) == (False, None)
