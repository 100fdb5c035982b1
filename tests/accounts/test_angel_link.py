"""Issue 15 item 6: Angel One accounts through the account services: the PIN and TOTP secret are
validated, stored encrypted and audited by name only; a link needs an api key plus PIN + TOTP
secret or an access token; Angel client codes are upper-cased."""

from __future__ import annotations

import json

import pytest

from accounts.models import Account, AccountStatus, Broker, Ownership
from accounts.services import AccountError, account_link, account_set_credentials
from replication.models import ReplicationEvent
from tests.factories import AccountFactory, KiteAccountFactory, UserFactory

pytestmark = pytest.mark.django_db

PIN = "4321"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _angel(**kwargs):
    return AccountFactory(broker=Broker.ANGEL, broker_user_id="A1000", **kwargs)


def _audit_text(account) -> str:
    return " ".join(
        json.dumps(e.data) + " " + e.message for e in ReplicationEvent.objects.filter(account=account)
    )


def test_set_credentials_stores_pin_and_totp_secret_audited_by_name_only():
    account = _angel(api_key="angelkey01")

    account = account_set_credentials(
        account=account, actor="ops", pin=" 4321 ", totp_secret="jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp"
    )

    assert (account.secret("pin"), account.secret("totp_secret")) == (PIN, SECRET)
    event = ReplicationEvent.objects.get(account=account, kind="account.credentials_changed")
    assert event.message == "credentials changed: pin, totp_secret"
    assert event.data["pin"]["after"] == event.data["totp_secret"]["after"] == "***"
    assert PIN not in _audit_text(account) and "JBSWY3DP" not in _audit_text(account)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("pin", "12ab", "4 to 8 digits"),
        ("pin", "123", "4 to 8 digits"),
        ("pin", "123456789", "4 to 8 digits"),
        ("pin", 1234, "must be text"),
        ("totp_secret", "NOT1BASE8", "base32"),
        ("totp_secret", "JBSWY3DP", "base32"),  # too short for an authenticator's secret
    ],
)
def test_set_credentials_refuses_a_bad_pin_or_secret_without_echoing_it(field, value, fragment):
    account = _angel(api_key="angelkey01")

    with pytest.raises(AccountError) as caught:
        account_set_credentials(account=account, actor="ops", **{field: value})

    assert caught.value.code == "invalid_credentials"
    assert fragment in caught.value.fields[field]
    assert str(value) not in caught.value.message
    account.refresh_from_db()
    assert account.pin == "" and account.totp_secret == ""
    assert not ReplicationEvent.objects.filter(kind="account.credentials_changed").exists()


@pytest.mark.parametrize("field", ["pin", "totp_secret"])
def test_pin_and_totp_secret_are_refused_for_a_broker_without_a_headless_login(field):
    kite = KiteAccountFactory()
    value = PIN if field == "pin" else SECRET

    with pytest.raises(AccountError) as caught:
        account_set_credentials(account=kite, actor="ops", **{field: value})
    assert caught.value.code == "credentials_not_allowed"
    assert "Angel One" in caught.value.fields[field]

    with pytest.raises(AccountError) as linked:
        account_link(
            broker=Broker.KITE,
            user_id="ZK77",
            api_key="kiteapikey9",
            api_secret="kitesecret9",
            actor="ops",
            **{field: value},
        )
    assert linked.value.code == "credentials_not_allowed"
    assert not Account.objects.filter(broker_user_id="ZK77").exists()


@pytest.mark.parametrize(
    ("credentials", "missing"),
    [
        ({}, "api_key"),
        ({"api_key": "angelkey01"}, "pin"),
        ({"api_key": "angelkey01", "pin": PIN}, "totp_secret"),
        ({"api_key": "angelkey01", "totp_secret": SECRET}, "pin"),
        ({"pin": PIN, "totp_secret": SECRET}, "api_key"),
        ({"access_token": "eyJ.angel.token"}, "api_key"),
    ],
)
def test_angel_link_needs_an_api_key_and_pin_with_totp_or_a_token(credentials, missing):
    with pytest.raises(AccountError) as caught:
        account_link(broker=Broker.ANGEL, user_id="A1000", actor="ops", **credentials)

    assert caught.value.code == "credentials_required"
    assert missing in caught.value.fields
    assert "Angel One" in caught.value.message
    assert "PIN and TOTP secret" in caught.value.message and "access token" in caught.value.message
    assert not Account.objects.exists()


def test_angel_link_with_a_token_stores_it_and_upper_cases_the_client_code():
    account, created = account_link(
        broker=Broker.ANGEL,
        user_id=" a1000 ",
        api_key="angelkey01",
        access_token="eyJhbGciOiJIUzUxMiJ9.eyJ1c2VybmFtZSI6IkExMDAwIn0.sig-nature_x",
        actor="ops",
    )

    assert created and account.broker_user_id == "A1000"
    assert account.secret("access_token").startswith("eyJhbGci")
    assert account.token_expires_at is not None
    assert account.status == AccountStatus.ACTIVE
    # The same client code in lower case updates it (one real account, never two).
    again, created_again = account_link(broker=Broker.ANGEL, user_id="a1000", name="Angel A", actor="ops")
    assert (again.pk, created_again, again.display_name) == (account.pk, False, "Angel A")


def test_angel_update_keeps_stored_credentials_and_needs_none_again():
    account = _angel(api_key="angelkey01", pin=PIN, totp_secret=SECRET, access_token="")

    updated, created = account_link(broker=Broker.ANGEL, user_id="A1000", multiplier="2", actor="ops")

    assert not created and updated.pk == account.pk
    assert updated.secret("pin") == PIN


def test_a_long_angel_session_token_is_accepted():
    token = "eyJhbGciOiJIUzUxMiJ9." + "a" * 900 + ".signature"
    account = _angel(api_key="angelkey01")

    account = account_set_credentials(account=account, actor="ops", access_token=token)

    assert account.secret("access_token") == token


def test_a_claim_with_only_a_token_stays_pending():
    owner = UserFactory()
    account, _ = account_link(
        broker=Broker.ANGEL,
        user_id="A2000",
        api_key="angelkey01",
        access_token="eyJ.angel.token",
        owner=owner,
        claim=True,
        actor=owner.username,
    )
    assert account.ownership == Ownership.PENDING
