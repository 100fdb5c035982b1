"""Issue 15 item 6: `account_link` of an Angel One account with its api key, PIN and TOTP secret
logs in once at Angel (the simulator, through the real SDK) before it stores anything: a refusal
stores nothing, a success keeps the day's session and proves a client's claim."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import transaction

from accounts.models import Account, AccountStatus, Broker, Ownership
from accounts.services import AccountError, account_link
from brokers.angel.session import session_expiry
from replication.models import ReplicationEvent
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "loginByPassword"


def test_a_claim_linked_with_pin_and_totp_logs_in_once_and_is_proven(angel_sim):
    client = angel_sim.sim.store.register(client_code="A3000")
    owner = UserFactory()
    rival = AccountFactory(
        broker=Broker.ANGEL, broker_user_id="A3000", ownership=Ownership.PENDING, owner=UserFactory()
    )

    account, created = account_link(
        broker=Broker.ANGEL,
        user_id="a3000",
        api_key=client.api_key,
        pin=client.pin,
        totp_secret=client.totp_secret,
        owner=owner,
        claim=True,
        actor=owner.username,
    )

    assert created and account.broker_user_id == "A3000"
    assert account.ownership == Ownership.PROVEN and account.ownership_proven_at is not None
    assert account.secret("access_token")
    assert account.token_expires_at == session_expiry(datetime.now(UTC))
    assert angel_sim.sim.hit_count(route=LOGIN, status=200) == 1
    kinds = list(ReplicationEvent.objects.filter(account=account).values_list("kind", flat=True))
    assert "account.linked" in kinds and "account.claim_proven" in kinds
    rival.refresh_from_db()
    assert rival.status == AccountStatus.DISABLED  # the other pending claim of the id is dropped
    text = " ".join(str(e.data) + e.message for e in ReplicationEvent.objects.all())
    assert client.pin not in text and client.totp_secret not in text


@pytest.mark.parametrize("bad", ["pin", "totp_secret"])
def test_a_refused_login_stores_nothing(angel_sim, bad):
    client = angel_sim.sim.store.register(client_code="A3001")
    values = {"pin": client.pin, "totp_secret": client.totp_secret}
    wrong_pin = "1111" if client.pin == "0000" else "0000"
    values[bad] = wrong_pin if bad == "pin" else "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

    with pytest.raises(AccountError) as caught:
        account_link(broker=Broker.ANGEL, user_id="A3001", api_key=client.api_key, actor="ops", **values)

    assert caught.value.code == "login_refused"
    assert "refused the login, nothing stored" in caught.value.message
    assert client.pin not in caught.value.message
    assert not Account.objects.exists() and not ReplicationEvent.objects.exists()


def test_an_update_with_a_new_pin_logs_in_with_the_stored_key_and_secret(angel_sim):
    client = angel_sim.sim.store.register(client_code="A3002")
    account = AccountFactory(
        broker=Broker.ANGEL,
        broker_user_id="A3002",
        api_key=client.api_key,
        pin="9999",
        totp_secret=client.totp_secret,
        status=AccountStatus.NEEDS_LOGIN,
    )

    updated, created = account_link(broker=Broker.ANGEL, user_id="A3002", pin=client.pin, actor="ops")

    assert not created and updated.pk == account.pk
    assert updated.secret("pin") == client.pin
    assert updated.secret("access_token") and updated.status == AccountStatus.ACTIVE
    assert updated.ownership == Ownership.VOUCHED  # staff's link stays vouched for
    assert angel_sim.sim.hit_count(route=LOGIN, status=200) == 1


def test_a_link_that_would_log_in_refuses_to_run_inside_a_transaction(angel_sim):
    client = angel_sim.sim.store.register(client_code="A3003")

    with pytest.raises(AccountError) as caught, transaction.atomic():
        account_link(
            broker=Broker.ANGEL,
            user_id="A3003",
            api_key=client.api_key,
            pin=client.pin,
            totp_secret=client.totp_secret,
            actor="ops",
        )

    assert caught.value.code == "in_transaction"
    assert angel_sim.sim.hit_count(route=LOGIN) == 0
