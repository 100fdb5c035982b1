"""Issue 13 item 6 (said once): the account risk-field list and the account's credentials, once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import RISK_FIELDS, RISK_LIST_FIELDS, RISK_NUMBER_FIELDS, Account
from brokers.credentials import BrokerCredentials
from brokers.paper.client import PaperBroker
from brokers.registry import build_client
from tests.api_helpers import API, people  # noqa: F401  (fixture)
from tests.factories import AccountFactory, KiteAccountFactory

pytestmark = pytest.mark.django_db

LOOSER = {
    "max_lots_per_order": 3,
    "max_quantity": 301,
    "max_order_value": "600000.00",
    "max_open_positions": 5,
    "daily_loss_limit": "6000.00",
}
STORED = {
    "max_lots_per_order": 2,
    "max_quantity": 300,
    "max_order_value": Decimal("500000"),
    "max_open_positions": 4,
    "daily_loss_limit": Decimal("5000"),
}


def test_risk_fields_are_every_limit_of_the_model():
    """Issue 13 item 6: the one risk list names real columns: lists, then number limits."""
    names = {field.name for field in Account._meta.get_fields()}
    assert set(RISK_FIELDS) <= names
    assert (*RISK_LIST_FIELDS, *RISK_NUMBER_FIELDS) == RISK_FIELDS
    assert set(LOOSER) == set(RISK_NUMBER_FIELDS)


def test_risk_fields_all_shown_by_the_api(people):  # noqa: F811
    """Issue 13 item 6: the API's account output carries every risk field."""
    account = AccountFactory(owner=people.alice, **STORED)

    body = people.as_alice.get(f"{API}/accounts/{account.pk}").json()

    assert {name: body[name] for name in RISK_NUMBER_FIELDS} == {
        "max_lots_per_order": 2,
        "max_quantity": 300,
        "max_order_value": "500000.00",
        "max_open_positions": 4,
        "daily_loss_limit": "5000.00",
    }
    assert {name: body[name] for name in RISK_LIST_FIELDS} == {name: [] for name in RISK_LIST_FIELDS}


@pytest.mark.parametrize("name", RISK_NUMBER_FIELDS)
def test_risk_number_limits_a_client_cannot_loosen(people, name):  # noqa: F811
    """Issue 13 item 6: every number limit of the one list is one a client may only tighten."""
    account = AccountFactory(owner=people.alice, **STORED)

    response = people.as_alice.patch(f"{API}/accounts/{account.pk}", {name: LOOSER[name]}, format="json")

    assert response.status_code == 403, response.json()
    assert name in response.json()["fields"]
    assert getattr(Account.objects.get(pk=account.pk), name) == STORED[name]


def test_risk_fields_all_editable_in_the_admin(admin_client):
    """Issue 13 item 6: the admin's change page has an input for every risk field."""
    account = AccountFactory()

    form = admin_client.get(reverse("admin:accounts_account_change", args=[account.pk])).context["adminform"]

    assert set(RISK_FIELDS) <= set(form.form.fields)


def test_account_broker_credentials_built_once_from_the_account():
    """Issue 13 item 6: an account's credentials come from one builder, secrets decrypted, repr clean."""
    kite = KiteAccountFactory(broker_user_id="AB1234", proxy_url="http://10.0.0.9:3128")
    setattr(kite, "api_key", "apikeyone1234567")  # noqa: B010  (encrypted field: untyped in the stubs)
    setattr(kite, "access_token", "accesstokenone12345678")  # noqa: B010
    kite.save()
    kite = Account.objects.get(pk=kite.pk)

    creds = kite.broker_credentials()

    assert creds == BrokerCredentials(
        broker="kite",
        user_id="AB1234",
        api_key="apikeyone1234567",
        access_token="accesstokenone12345678",
        proxy_url="http://10.0.0.9:3128",
    )
    assert "apikeyone" not in repr(creds) and "accesstoken" not in repr(creds)
    paper = AccountFactory(broker_user_id="PA0042")
    client = build_client(paper.broker_credentials())
    assert isinstance(client, PaperBroker) and client.user_id == "PA0042"
