"""The 08:45 pre-open check covers every broker with a session, by its capabilities' session kind."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.test import override_settings

from accounts.models import AccountStatus, Broker
from brokers.capabilities import PAPER, Session, SessionKind, register, unregister
from replication.login_check import accounts_needing_login, login_check_task
from replication.models import ReplicationEvent
from tests.factories import KiteAccountFactory, StaffFactory

pytestmark = pytest.mark.django_db

IST = ZoneInfo("Asia/Kolkata")
MONDAY_0845_IST = datetime(2026, 3, 9, 8, 45, tzinfo=IST).astimezone(UTC)


def ist(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=IST).astimezone(UTC)


@pytest.fixture
def headless_paper():
    """The paper broker as if it had Angel's session: a headless login, dying at midnight IST."""
    register(
        replace(PAPER, session=Session(SessionKind.HEADLESS_TOTP, expires_at=time(0, 0)), label="Headless")
    )
    yield
    unregister("paper")


def _paper(**kwargs):
    return KiteAccountFactory(broker=Broker.PAPER, api_key="", api_secret="", **kwargs)


def test_a_broker_without_sessions_is_never_listed():
    _paper(access_token="", token_expires_at=None)
    assert accounts_needing_login(MONDAY_0845_IST) == []
    assert (
        login_check_task(MONDAY_0845_IST)
        == "every broker account has a live session for the next market open"
    )


@override_settings(
    EMAIL_HOST="smtp.example.com", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"
)
def test_every_broker_with_a_session_is_checked_by_its_capabilities(headless_paper):
    StaffFactory(email="ops@example.com")
    kite_stale = KiteAccountFactory(token_expires_at=ist(2, 6))
    KiteAccountFactory(token_expires_at=ist(10, 6))  # logged in this morning
    paper_stale = _paper(access_token="t", token_expires_at=ist(8, 0))  # died at Sunday midnight
    _paper(access_token="t", token_expires_at=ist(10, 0))  # renewed this morning: live till midnight
    paper_flagged = _paper(access_token="t", token_expires_at=ist(10, 0), status=AccountStatus.NEEDS_LOGIN)

    needing = accounts_needing_login(MONDAY_0845_IST)

    assert [a.pk for a in needing] == [kite_stale.pk, paper_stale.pk, paper_flagged.pk]
    assert login_check_task(MONDAY_0845_IST) == "3 broker account(s) need a login (staff emailed)"
    (message,) = mail.outbox
    assert f"/accounts/{kite_stale.pk}/kite/login/" in message.body  # Kite: a person logs in
    assert f"/accounts/{paper_stale.pk}/paper/login/" not in message.body  # headless: the server does
    assert "stored client code, PIN and TOTP" in message.body
    assert "manage.py kite_login ACCOUNT_ID" in message.body
    messages = dict(
        ReplicationEvent.objects.filter(kind="account.login_needed").values_list("account_id", "message")
    )
    assert messages[kite_stale.pk].startswith("needs a Kite login")
    assert messages[paper_stale.pk].startswith("needs a Headless login")
