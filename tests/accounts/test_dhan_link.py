"""Linking a Dhan account (issue 16) through `manage.py link_account --broker dhan`, the API and the
admin. Dhan's PIN + TOTP login needs no api key: with the client id, PIN and TOTP secret the link
logs in once at the Dhan simulator (real SDK, `generateAccessToken`) before anything is stored;
an access token made on web.dhan.co is taken as it is and lives 24 hours."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from accounts.models import Account, Broker, Ownership
from tests.api_helpers import API
from tests.dhan_helpers import running_dhan_sim

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dhan_sim() -> Iterator[object]:
    with running_dhan_sim() as running:
        yield running


def link(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("link_account", "--broker", "dhan", *args, stdout=out)
    return out.getvalue().splitlines()


def test_dhan_link_command_logs_in_once_then_keeps_pin_and_totp_encrypted(dhan_sim, monkeypatch):
    client = dhan_sim.sim.store.register(client_id="1100000001")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{client.pin}\n{client.totp_secret}\n"))

    lines = link("--user-id", "1100000001", "--pin", "-", "--totp-secret", "-")

    account = Account.objects.get(broker=Broker.DHAN)
    assert lines[0] == f"account_id={account.pk} created"
    assert (account.secret("pin"), account.secret("totp_secret")) == (client.pin, client.totp_secret)
    assert account.secret("access_token")
    assert abs(account.token_expires_at - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=2)
    assert dhan_sim.sim.hit_count(route="POST /app/generateAccessToken", status=200) == 1
    output = "\n".join(lines)
    assert client.pin not in output and client.totp_secret not in output
    with connection.cursor() as cursor:
        cursor.execute("SELECT pin, totp_secret FROM accounts_account WHERE id = %s", [account.pk])
        stored = cursor.fetchone()
    assert client.pin not in stored and client.totp_secret not in stored


def test_dhan_link_command_with_a_wrong_pin_stores_nothing(dhan_sim, monkeypatch):
    client = dhan_sim.sim.store.register(client_id="1100000002")
    wrong = "111111" if client.pin != "111111" else "222222"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{wrong}\n{client.totp_secret}\n"))

    with pytest.raises(CommandError, match="refused the login, nothing stored"):
        link("--user-id", "1100000002", "--pin", "-", "--totp-secret", "-")
    assert not Account.objects.exists()


def test_dhan_link_api_with_pin_and_totp_is_proven_by_the_login(people, dhan_sim):
    client = dhan_sim.sim.store.register(client_id="1100000003")

    response = people.as_alice.post(
        f"{API}/accounts/link",
        {
            "broker": "dhan",
            "user_id": "1100000003",
            "pin": client.pin,
            "totp_secret": client.totp_secret,
            "consent": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    shown = response.json()["account"]
    assert (shown["broker"], shown["broker_user_id"], shown["ownership"]) == ("dhan", "1100000003", "proven")
    assert (shown["has_pin"], shown["has_totp_secret"], shown["has_access_token"]) == (True, True, True)
    text = response.content.decode()
    assert client.totp_secret not in text and f'"{client.pin}"' not in text


def test_dhan_link_api_with_a_web_token_only(people, dhan_sim):
    dhan_sim.sim.store.register(client_id="1100000004")
    token = dhan_sim.sim.store.open("1100000004").access_token

    response = people.as_bob.post(
        f"{API}/accounts/link",
        {"broker": "dhan", "user_id": "1100000004", "access_token": token},
        format="json",
    )

    assert response.status_code == 201, response.json()
    account = Account.objects.get(broker=Broker.DHAN)
    assert account.secret("access_token") == token
    assert abs(account.token_expires_at - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=2)


def test_dhan_link_api_without_pin_totp_or_token_is_refused(people):
    response = people.as_alice.post(
        f"{API}/accounts/link", {"broker": "dhan", "user_id": "1100000005"}, format="json"
    )
    assert response.status_code == 400
    assert not Account.objects.exists()


def test_dhan_link_through_the_admin_with_pin_and_totp(admin_client):
    from tests.accounts.test_admin import _change_form_data

    data = _change_form_data(
        Account(display_name="Dhan added", capital_mode="total", multiplier=Decimal("1")),
        broker="dhan",
        broker_user_id="1100000006",
        pin="135790",
        totp_secret="JBSWY3DPEHPK3PXP",
    )

    response = admin_client.post(reverse("admin:accounts_account_add"), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    account = Account.objects.get(broker=Broker.DHAN)
    assert account.broker_user_id == "1100000006" and account.ownership == Ownership.VOUCHED
    assert (account.secret("pin"), account.secret("totp_secret")) == ("135790", "JBSWY3DPEHPK3PXP")


def test_dhan_link_command_with_a_web_token_says_what_comes_next(dhan_sim, monkeypatch):
    dhan_sim.sim.store.register(client_id="1100000007")
    token = dhan_sim.sim.store.open("1100000007").access_token
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{token}\n"))

    lines = link("--user-id", "1100000007", "--access-token", "-")

    assert Account.objects.get(broker=Broker.DHAN).secret("access_token") == token
    assert any(line.startswith("next: the access token lives 24 hours") for line in lines)
    assert token not in "\n".join(lines)
