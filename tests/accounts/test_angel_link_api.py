"""Issue 15 item 6: linking an Angel One account through the API (`broker: "angel"`, write-only
`pin` and `totp_secret`), checked by one login at the Angel simulator through the real SDK."""

from __future__ import annotations

import pytest

from accounts.models import Account, Broker, Ownership
from tests.api_helpers import API
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_client_links_angel_with_pin_and_totp_and_is_proven_by_the_login(people, angel_sim):
    client = angel_sim.sim.store.register(client_code="A4000")

    response = people.as_alice.post(
        f"{API}/accounts/link",
        {
            "broker": "angel",
            "user_id": "a4000",
            "api_key": client.api_key,
            "pin": client.pin,
            "totp_secret": client.totp_secret,
            "consent": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["login_url"] is None  # the server logs in by itself
    shown = body["account"]
    assert (shown["broker"], shown["broker_user_id"], shown["ownership"]) == ("angel", "A4000", "proven")
    assert (shown["has_pin"], shown["has_totp_secret"], shown["has_access_token"]) == (True, True, True)
    assert shown["login_required"] is False
    text = response.content.decode()
    assert 'pin":"' not in text and client.totp_secret not in text and client.api_key not in text
    account = Account.objects.get(pk=shown["id"])
    assert account.owner == people.alice and account.secret("pin") == client.pin


def test_a_wrong_pin_is_refused_by_the_login_and_nothing_is_stored(people, angel_sim):
    client = angel_sim.sim.store.register(client_code="A4001")
    wrong = "1111" if client.pin == "0000" else "0000"

    response = people.as_alice.post(
        f"{API}/accounts/link",
        {
            "broker": "angel",
            "user_id": "A4001",
            "api_key": client.api_key,
            "pin": wrong,
            "totp_secret": client.totp_secret,
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "login_refused"
    assert "nothing stored" in response.json()["message"]
    assert client.totp_secret not in response.content.decode()
    assert not Account.objects.exists()


def test_pin_and_totp_secret_are_write_only_on_patch(people):
    account = AccountFactory(
        broker=Broker.ANGEL, broker_user_id="A4002", owner=people.alice, ownership=Ownership.VOUCHED
    )

    response = people.as_alice.patch(
        f"{API}/accounts/{account.pk}",
        {"pin": "246810", "totp_secret": "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["has_pin"] is True and response.json()["has_totp_secret"] is True
    assert "246810" not in response.content.decode() and "KRSXG5" not in response.content.decode()
    account.refresh_from_db()
    assert account.secret("pin") == "246810"

    bad = people.as_alice.patch(f"{API}/accounts/{account.pk}", {"pin": "12x4"}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_credentials"
    assert "12x4" not in bad.content.decode()
