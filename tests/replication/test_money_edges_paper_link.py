"""Issue 11 defect 15: a paper account that does not exist on the paper exchange cannot be linked
(API, admin, `link_account`), and the staff overview flags a child whose funds cannot be read."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import Account
from brokers.paper.models import PaperAccount
from replication.models import ReplicationEvent
from tests.api_helpers import API
from tests.dashboard_helpers import build_desk, orchestrator, replicate_entry
from tests.factories import AccountFactory, StaffFactory

pytestmark = pytest.mark.django_db


def test_money_edges_api_link_of_unknown_paper_account_refused_in_error_shape(people):
    """Issue 11 defect 15: POST link of a paper user id the exchange does not know is a 400 with
    {code, message, fields}; nothing is written. An opened paper account links (201)."""
    response = people.as_alice.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "GHOST1", "consent": True}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "paper_account_unknown"
    assert "GHOST1" in body["message"] and "paper open" in body["message"]
    assert set(body["fields"]) == {"user_id"}
    assert not Account.objects.exists()
    assert not ReplicationEvent.objects.exists()

    PaperAccount.objects.create(user_id="GHOST1", cash=Decimal("500000"))
    opened = people.as_alice.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "GHOST1", "consent": True}, format="json"
    )
    assert opened.status_code == 201


def test_money_edges_link_account_command_refuses_unknown_paper_account():
    """Issue 11 defect 15: `manage.py link_account --broker paper` of an unknown paper account is a
    one-line CommandError and writes nothing."""
    with pytest.raises(CommandError, match="no paper account 'GHOST2'"):
        call_command("link_account", "--broker", "paper", "--user-id", "GHOST2", stdout=io.StringIO())

    assert not Account.objects.exists()


def test_money_edges_admin_add_refuses_unknown_paper_account(client):
    """Issue 11 defect 15: the admin's add form shows the refusal and creates nothing."""
    client.force_login(StaffFactory(username="admin-op", is_superuser=True))
    data = {
        "broker": "paper",
        "broker_user_id": "GHOST3",
        "display_name": "ghost",
        "owner": "",
        "proxy_url": "",
        "capital_mode": "total",
        "fixed_capital": "",
        "multiplier": "1",
        "pending_policy": "leave",
        "market_after_seconds": "0",
        "allowed_instruments": "[]",
        "blocked_instruments": "[]",
        "allowed_products": "[]",
        **dict.fromkeys(("max_lots_per_order", "max_quantity", "max_order_value"), ""),
        **dict.fromkeys(("max_open_positions", "daily_loss_limit", "api_key", "api_secret"), ""),
        "access_token": "",
    }

    response = client.post(reverse("admin:accounts_account_add"), data)

    assert response.status_code == 200
    assert "no paper account" in response.content.decode()
    assert not Account.objects.filter(broker_user_id="GHOST3").exists()

    PaperAccount.objects.create(user_id="GHOST3", cash=Decimal("500000"))
    assert client.post(reverse("admin:accounts_account_add"), data).status_code == 302
    assert Account.objects.filter(broker_user_id="GHOST3").exists()


def test_money_edges_overview_flags_a_child_whose_funds_cannot_be_read(client):
    """Issue 11 defect 15: a child linked to a paper account that is gone (funds reads fail every
    tick, so it never gets a margin snapshot) is flagged on the staff overview; the others are not."""
    desk = build_desk()
    ghost = AccountFactory(broker_user_id="GHOST4", display_name="Ghost child")
    with orchestrator() as orch:
        replicate_entry(desk, orch)
    client.force_login(StaffFactory(username="ops"))

    page = client.get(reverse("dashboard:overview")).content.decode()

    rows = {name: _row(page, name) for name in ("Ghost child", ">C1<")}
    assert "funds unreadable" in rows["Ghost child"]
    assert "funds unreadable" not in rows[">C1<"]
    assert ghost.snapshots.count() == 0


def _row(page: str, marker: str) -> str:
    start = page.index(marker)
    return page[page.rindex("<tr>", 0, start) : page.index("</tr>", start)]
