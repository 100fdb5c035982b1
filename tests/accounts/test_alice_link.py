"""Linking an Alice Blue account (issue 16): user id, app code (api key), api secret, and the vendor
`userSession` kept as the access token (a long-lived token: SessionKind.LONG_TOKEN), through the API
and `manage.py link_account --broker alice`; the engine then trades it through AliceBroker."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from django.core.management import call_command

from accounts.models import Account
from brokers.alice.client import AliceBroker
from brokers.capabilities import SessionKind, capabilities_for
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
