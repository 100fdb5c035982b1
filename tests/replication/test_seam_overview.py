"""Issue 15: the overview's "accounts needing login" covers every broker whose session has a token
(capabilities, not names), and links a redirect login to its page, anything else to the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Broker
from tests.factories import AccountFactory, KiteAccountFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory(username="ops"))
    return client


def _needs_login_card(page: str) -> str:
    start = page.index('id="needs-login"')
    return page[start : page.index("</section>", start)]


def test_seam_overview_angel_child_needing_login_is_listed_with_its_admin_page(staff_client):
    now = timezone.now()
    angel = AccountFactory(
        broker=Broker.ANGEL,
        broker_user_id="A100200",
        display_name="Angel expired",
        access_token="eyJangel.expired.token",
        token_expires_at=now - timedelta(minutes=5),
    )
    live = AccountFactory(
        broker=Broker.ANGEL,
        broker_user_id="A100300",
        display_name="Angel live",
        access_token="eyJangel.live.token",
        token_expires_at=now + timedelta(hours=3),
    )
    kite = KiteAccountFactory(display_name="Kite expired", token_expires_at=now - timedelta(minutes=1))
    AccountFactory(display_name="Paper never logs in")

    card = _needs_login_card(staff_client.get(reverse("dashboard:overview")).content.decode())

    assert "Angel expired" in card
    assert reverse("admin:accounts_account_change", args=[angel.pk]) in card
    assert "Kite expired" in card and f"/accounts/{kite.pk}/kite/login/" in card
    assert live.display_name not in card
    assert "Paper never logs in" not in card
