"""Linking an Alice Blue account (issue 16): user id, app code (api key), api secret, and the vendor
`userSession` kept as the access token (a long-lived token: SessionKind.LONG_TOKEN), through the API
`manage.py link_account --broker alice` and the admin's forms; the engine then trades it through
AliceBroker."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.models import Account, Broker, Ownership
from brokers.alice.client import AliceBroker
from brokers.capabilities import SessionKind, capabilities_for
from brokers.paper.services import paper_account_open
from brokers.registry import build_client
from lab.alice_sim.server import RunningSim
from tests.alice_helpers import running_alice_sim
from tests.api_helpers import API

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running() -> Iterator[RunningSim]:
    yield from running_alice_sim()


def _session(running: RunningSim, user_id: str) -> tuple[object, str]:
    client = running.sim.store.register(user_id=user_id)
    return client, running.sim.store.open(user_id)


def test_link_account_command_links_alice_without_printing_secrets(running):
    client, session = _session(running, "AB123")
    out = io.StringIO()
    call_command(
        "link_account",
        "--broker",
        "alice",
        "--user-id",
        "AB123",
        "--api-key",
        client.app_code,
        "--api-secret",
        client.api_secret,
        "--access-token",
        session,
        stdout=out,
    )

    account = Account.objects.get(broker="alice", broker_user_id="AB123")
    assert (account.secret("api_key"), account.secret("api_secret"), account.secret("access_token")) == (
        client.app_code,
        client.api_secret,
        session,
    )
    for secret in (client.app_code, client.api_secret, session):
        assert secret not in out.getvalue()
    broker = build_client(account.broker_credentials())
    assert isinstance(broker, AliceBroker)
    assert broker.session is not None and broker.session.user_session == session
    assert capabilities_for("alice").session.kind is SessionKind.LONG_TOKEN


def test_api_links_alice_with_the_user_session(people, running):
    client, session = _session(running, "AB124")
    response = people.as_alice.post(
        f"{API}/accounts/link",
        {
            "broker": "alice",
            "user_id": "AB124",
            "api_key": client.app_code,
            "api_secret": client.api_secret,
            "access_token": session,
            "consent": True,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    shown = response.json()["account"]
    assert (shown["broker"], shown["broker_user_id"], shown["has_access_token"]) == ("alice", "AB124", True)
    text = response.content.decode()
    assert session not in text and client.api_secret not in text and client.app_code not in text


# --- The admin's add and change forms ------------------------------------------------------------


def _admin_data(**overrides: str) -> dict[str, str]:
    from tests.accounts.test_admin import _change_form_data

    return _change_form_data(
        Account(display_name="Alice client", capital_mode="total", multiplier=Decimal("1")), **overrides
    )


def test_admin_adds_an_alice_account_with_app_code_secret_and_session(admin_client, running):
    client, session = _session(running, "AB125")
    paper_account_open(user_id="AB125", cash=Decimal("500000"))  # the book the simulator serves
    data = _admin_data(
        broker="alice",
        broker_user_id="AB125",
        api_key=client.app_code,
        api_secret=client.api_secret,
        access_token=session,
    )

    response = admin_client.post(reverse("admin:accounts_account_add"), data)

    assert response.status_code == 302, response.content.decode()[-3000:]
    account = Account.objects.get(broker=Broker.ALICE)
    assert account.broker_user_id == "AB125" and account.ownership == Ownership.VOUCHED
    assert (account.secret("api_key"), account.secret("api_secret"), account.secret("access_token")) == (
        client.app_code,
        client.api_secret,
        session,
    )
    broker = build_client(account.broker_credentials())
    assert isinstance(broker, AliceBroker) and broker.session is not None
    assert broker.funds().available == Decimal("500000")  # the stored session works at the simulator
    page = admin_client.get(reverse("admin:accounts_account_change", args=[account.pk])).content.decode()
    for secret in (client.app_code, client.api_secret, session):
        assert secret not in page


def test_admin_renews_an_alice_session_and_refuses_a_pin(admin_client, running):
    client, first = _session(running, "AB126")
    admin_client.post(
        reverse("admin:accounts_account_add"),
        _admin_data(
            broker="alice",
            broker_user_id="AB126",
            api_key=client.app_code,
            api_secret=client.api_secret,
            access_token=first,
        ),
    )
    account = Account.objects.get(broker=Broker.ALICE, broker_user_id="AB126")
    url = reverse("admin:accounts_account_change", args=[account.pk])

    refused = admin_client.post(url, _admin_data(pin="1234"))
    assert refused.status_code == 200
    assert "for Angel One and Dhan accounts only" in refused.content.decode()

    second = running.sim.store.open("AB126")  # the next vendor login's userSession
    response = admin_client.post(url, _admin_data(access_token=second))
    assert response.status_code == 302, response.content.decode()[-3000:]
    account.refresh_from_db()
    assert account.secret("access_token") == second and account.secret("api_key") == client.app_code
    assert account.pin == ""


def test_admin_alice_user_id_is_upper_cased_like_kite_and_angel(admin_client, running):
    client, session = _session(running, "AB127")
    data = _admin_data(
        broker="alice",
        broker_user_id="ab127",
        api_key=client.app_code,
        api_secret=client.api_secret,
        access_token=session,
    )

    response = admin_client.post(reverse("admin:accounts_account_add"), data)

    assert response.status_code == 302
    assert Account.objects.get(broker=Broker.ALICE).broker_user_id == "AB127"
