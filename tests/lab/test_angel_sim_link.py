"""`manage.py link_account --broker angel` against the Angel simulator: the PIN and TOTP secret
are checked by one real login (through the SDK) before anything is stored, then kept encrypted."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import Account, Broker
from brokers.angel.session import session_expiry
from replication.models import ReplicationEvent

pytestmark = pytest.mark.django_db(transaction=True)


def link(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("link_account", "--broker", "angel", *args, stdout=out)
    return out.getvalue().splitlines()


def test_angel_link_logs_in_once_then_stores_pin_and_totp_encrypted(angel_sim, monkeypatch):
    client = angel_sim.sim.store.register(client_code="A1234")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{client.pin}\n{client.totp_secret}\n"))

    lines = link("--user-id", "a1234", "--api-key", client.api_key, "--pin", "-", "--totp-secret", "-")

    account = Account.objects.get(broker=Broker.ANGEL)
    assert lines[0] == f"account_id={account.pk} created"
    assert account.broker_user_id.upper() == "A1234"
    assert (account.secret("pin"), account.secret("totp_secret")) == (client.pin, client.totp_secret)
    assert account.secret("access_token")  # the day's session from the check
    assert account.token_expires_at == session_expiry(datetime.now(UTC))
    assert angel_sim.sim.hit_count(route="loginByPassword", status=200) == 1
    output = "\n".join(lines)
    assert client.pin not in output and client.totp_secret not in output
    with connection.cursor() as cursor:
        cursor.execute("SELECT pin, totp_secret FROM accounts_account WHERE id = %s", [account.pk])
        stored = cursor.fetchone()
    assert client.pin not in stored and client.totp_secret not in stored  # encrypted at rest
    events = ReplicationEvent.objects.filter(account=account)
    assert any("pin" in e.data and "totp_secret" in e.data for e in events)
    assert all(client.totp_secret not in str(e.data) and client.pin not in str(e.data) for e in events)


def test_angel_link_with_a_wrong_pin_stores_nothing(angel_sim, monkeypatch):
    client = angel_sim.sim.store.register(client_code="A1235")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"0000\n{client.totp_secret}\n"))

    with pytest.raises(CommandError, match="refused the login, nothing stored"):
        link("--user-id", "A1235", "--api-key", client.api_key, "--pin", "-", "--totp-secret", "-")

    assert not Account.objects.exists()


def test_angel_link_refuses_a_secret_that_is_not_base32(angel_sim):
    with pytest.raises(CommandError, match="base32"):
        link(
            "--user-id",
            "A1236",
            "--api-key",
            "angelsimkey1",
            "--pin",
            "1234",
            "--totp-secret",
            "NOT1BASE8",
        )
    assert not Account.objects.exists()


def test_angel_link_refuses_a_pin_that_is_not_digits(angel_sim):
    with pytest.raises(CommandError, match="4 to 8 digits"):
        link(
            "--user-id",
            "A1237",
            "--api-key",
            "angelsimkey1",
            "--pin",
            "12ab",
            "--totp-secret",
            "JBSWY3DPEHPK3PXP",
        )
    assert not Account.objects.exists()


def test_angel_login_options_are_refused_for_kite(angel_sim):
    with pytest.raises(CommandError, match="for Angel One and Dhan accounts only"):
        call_command(
            "link_account",
            "--broker",
            "kite",
            "--user-id",
            "ZK9",
            "--api-key",
            "kiteapikey9",
            "--pin",
            "1234",
        )
