"""Issue 15 item 6: the staff dashboards show each child's broker, and the overview's login button
says what kind of login the broker's session needs (a login link only for an interactive login)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccountStatus, Broker
from brokers import capabilities
from brokers.capabilities import Session, SessionKind, capabilities_for
from tests.factories import AccountFactory, KiteAccountFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory(username="ops"))
    return client


def _row(page: str, name: str) -> str:
    start = page.index(f'data-child="{name}"')
    return page[start : page.index("</tr>", start)]


def _needs_login_rows(page: str) -> dict[str, str]:
    start = page.index('id="needs-login"')
    card = page[start : page.index("</section>", start)]
    rows = re.findall(r"<tr>(.*?)</tr>", card, flags=re.S)
    return {re.sub(r"<.*", "", row.strip().removeprefix("<td>")).strip(): row for row in rows}


def test_overview_children_table_shows_each_childs_broker(staff_client):
    AccountFactory(broker=Broker.ANGEL, broker_user_id="A6000", display_name="Angel child")
    KiteAccountFactory(display_name="Kite child")
    AccountFactory(display_name="Paper child")

    page = staff_client.get(reverse("dashboard:overview")).content.decode()

    assert "Angel One" in _row(page, "Angel child")
    assert "Kite" in _row(page, "Kite child") and "Angel One" not in _row(page, "Kite child")
    assert "paper" in _row(page, "Paper child").lower()


def test_child_detail_shows_the_broker_label(staff_client):
    child = AccountFactory(broker=Broker.ANGEL, broker_user_id="A6001", display_name="Angel detail")

    page = staff_client.get(reverse("dashboard:child", args=[child.pk])).content.decode()

    header = page[page.index("<h1") : page.index("</h1>")]
    assert "Angel One" in header and "A6001" in header


def test_login_button_follows_the_session_kind_not_the_broker_name(staff_client):
    past = timezone.now() - timedelta(minutes=5)
    kite = KiteAccountFactory(display_name="Kite stale", token_expires_at=past)
    angel = AccountFactory(
        broker=Broker.ANGEL,
        broker_user_id="A6002",
        display_name="Angel refused",
        api_key="angelkey01",
        pin="1234",
        totp_secret="JBSWY3DPEHPK3PXP",
        status=AccountStatus.NEEDS_LOGIN,
    )

    rows = _needs_login_rows(staff_client.get(reverse("dashboard:overview")).content.decode())

    assert f'href="/accounts/{kite.pk}/kite/login/"' in rows["Kite stale"]
    assert ">Log in<" in rows["Kite stale"]
    angel_row = rows["Angel refused"]
    assert reverse("admin:accounts_account_change", args=[angel.pk]) in angel_row
    assert "Log in" not in angel_row and "Kite" not in angel_row
    assert "PIN and TOTP" in angel_row


def test_a_redirect_login_at_another_broker_gets_the_login_link(staff_client):
    angel = capabilities_for(Broker.ANGEL)
    capabilities.register(replace(angel, session=Session(SessionKind.DAILY_REDIRECT, expires_at=time(6, 0))))
    try:
        account = AccountFactory(
            broker=Broker.ANGEL,
            broker_user_id="A6003",
            display_name="Angel redirect",
            access_token="",
            token_expires_at=None,
        )
        rows = _needs_login_rows(staff_client.get(reverse("dashboard:overview")).content.decode())
    finally:
        capabilities.unregister(Broker.ANGEL)

    row = rows["Angel redirect"]
    assert ">Log in<" in row and f"/accounts/{account.pk}/angel/login/" in row
