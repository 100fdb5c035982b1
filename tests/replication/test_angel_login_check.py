"""Issue 15: the 08:45 pre-open check logs in itself for a headless-TOTP account (Angel One) whose
PIN and TOTP secret are stored (the Angel simulator, through the real SDK), stores the day's session
and flags the account only when that login fails; without them it flags as before. The overview's
"accounts needing login" leaves out the accounts the server logs in for itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker
from brokers.angel.session import session_expiry
from lab.angel_sim.server import RunningSim
from replication.login_check import accounts_needing_login, login_check_task
from replication.models import ReplicationEvent
from tests.factories import AccountFactory, StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "loginByPassword"


def _angel(angel_sim: RunningSim, code: str, *, secrets: bool = True, **kwargs) -> Account:
    client = angel_sim.sim.store.register(client_code=code)
    login = {"pin": client.pin, "totp_secret": client.totp_secret} if secrets else {}
    kwargs.setdefault("access_token", "")
    kwargs.setdefault("token_expires_at", None)
    return AccountFactory(broker=Broker.ANGEL, broker_user_id=code, api_key=client.api_key, **login, **kwargs)


def _flagged() -> dict[int, str]:
    return dict(
        ReplicationEvent.objects.filter(kind="account.login_needed").values_list("account_id", "message")
    )


def test_the_check_logs_in_for_an_account_with_pin_and_totp_and_stores_the_session(angel_sim):
    account = _angel(angel_sim, "A5000")
    now = timezone.now()

    assert accounts_needing_login(now) == []  # the server logs in for it: nobody needs to
    summary = login_check_task(now)

    assert "logged in" in summary and "need a login" not in summary
    account.refresh_from_db()
    assert account.secret("access_token")
    assert account.token_expires_at == session_expiry(datetime.now(UTC))
    assert angel_sim.sim.hit_count(route=LOGIN, status=200) == 1
    assert _flagged() == {}
    changed = ReplicationEvent.objects.get(account=account, kind="account.credentials_changed")
    assert changed.actor == "login-check" and changed.message == "credentials changed: access_token"


def test_a_failed_login_flags_only_that_account(angel_sim):
    refused = _angel(angel_sim, "A5001")
    angel_sim.sim.store.register(client_code="A5001", pin="97531", totp_secret=refused.secret("totp_secret"))
    fine = _angel(angel_sim, "A5002")
    now = timezone.now()

    summary = login_check_task(now)

    assert summary.startswith("1 Angel One account(s) need a login")
    flagged = _flagged()
    assert list(flagged) == [refused.pk]
    assert "server's login failed" in flagged[refused.pk]
    assert refused.secret("pin") not in flagged[refused.pk]
    fine.refresh_from_db()
    assert fine.secret("access_token")


def test_without_pin_and_totp_the_account_is_flagged_as_before(angel_sim):
    bare = _angel(angel_sim, "A5003", secrets=False)
    now = timezone.now()

    assert [a.pk for a in accounts_needing_login(now)] == [bare.pk]
    summary = login_check_task(now)

    assert summary.startswith("1 Angel One account(s) need a login")
    assert "no access token" in _flagged()[bare.pk]
    assert angel_sim.sim.hit_count(route=LOGIN) == 0


def test_a_live_session_is_left_alone(angel_sim):
    later = timezone.now() + timedelta(days=3)
    _angel(angel_sim, "A5004", access_token="eyJ.live.token", token_expires_at=later)

    summary = login_check_task(timezone.now())

    assert summary == "every broker account has a live session for the next market open"
    assert angel_sim.sim.hit_count(route=LOGIN) == 0


def test_the_overview_lists_only_the_accounts_a_person_must_log_in(client):
    client.force_login(StaffFactory(username="ops"))
    AccountFactory(
        broker=Broker.ANGEL,
        broker_user_id="A5005",
        display_name="Angel headless",
        api_key="angelkey01",
        pin="1234",
        totp_secret="JBSWY3DPEHPK3PXP",
        access_token="",
        token_expires_at=None,
    )
    AccountFactory(
        broker=Broker.ANGEL,
        broker_user_id="A5006",
        display_name="Angel no secrets",
        api_key="angelkey01",
        access_token="",
        token_expires_at=None,
    )
    AccountFactory(
        broker=Broker.ANGEL,
        broker_user_id="A5007",
        display_name="Angel refused",
        api_key="angelkey01",
        pin="1234",
        totp_secret="JBSWY3DPEHPK3PXP",
        status=AccountStatus.NEEDS_LOGIN,
    )

    page = client.get(reverse("dashboard:overview")).content.decode()
    card = page[page.index('id="needs-login"') : page.index("</section>", page.index('id="needs-login"'))]

    assert "Angel no secrets" in card and "Angel refused" in card
    assert "Angel headless" not in card
