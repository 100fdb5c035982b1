"""Hostile input: every row is answered with 400 and a message, and no row of the database changes."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.forms.models import model_to_dict
from django.urls import reverse

from accounts.models import Account
from brokers.paper.models import PaperAccount
from replication.models import ReplicationEvent
from tests.api_helpers import API, API_KEY, API_SECRET
from tests.factories import AccountFactory, MasterAccountFactory

pytestmark = pytest.mark.django_db

# The paper user ids these tests link: account_link refuses one the paper exchange does not
# know (issue 11 defect 15), so they are opened first.
PAPER_ACCOUNTS = ("F1", "HOSTILE1", "VERBATIM1")


@pytest.fixture(autouse=True)
def paper_accounts_open(db):
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=user_id, cash=Decimal("1000000")) for user_id in PAPER_ACCOUNTS]
    )


LONG = "x" * 10_000
MARKUP = "<script>alert('pwn')</script>"
SQL = "Robert'); DROP TABLE accounts_account; --"

PAPER = {"broker": "paper", "user_id": "HOSTILE1"}
KITE = {"broker": "kite", "user_id": "HK1", "api_key": API_KEY, "api_secret": API_SECRET}

# (id, body, a field the error must name)
LINK_CASES = [
    ("missing-everything", {}, "broker"),
    ("missing-user-id", {"broker": "paper"}, "user_id"),
    ("unknown-broker", {**PAPER, "broker": "zerodha"}, "broker"),
    ("broker-wrong-type", {**PAPER, "broker": 5}, "broker"),
    ("user-id-list", {**PAPER, "user_id": ["A"]}, "user_id"),
    ("user-id-number", {**PAPER, "user_id": 12345}, "user_id"),
    ("user-id-markup", {**PAPER, "user_id": MARKUP}, "user_id"),
    ("user-id-sql", {**PAPER, "user_id": SQL}, "user_id"),
    ("user-id-long", {**PAPER, "user_id": LONG}, "user_id"),
    ("name-long", {**PAPER, "name": LONG}, "name"),
    ("name-number", {**PAPER, "name": 42}, "name"),
    ("name-object", {**PAPER, "name": {"$gt": ""}}, "name"),
    ("name-control-chars", {**PAPER, "name": "a\u0000b"}, "name"),
    ("multiplier-zero", {**PAPER, "multiplier": "0"}, "multiplier"),
    ("multiplier-negative", {**PAPER, "multiplier": -1}, "multiplier"),
    ("multiplier-huge", {**PAPER, "multiplier": 1e30}, "multiplier"),
    ("multiplier-huge-text", {**PAPER, "multiplier": "1e30"}, "multiplier"),
    ("multiplier-nan", {**PAPER, "multiplier": "NaN"}, "multiplier"),
    ("multiplier-infinity", {**PAPER, "multiplier": "Infinity"}, "multiplier"),
    ("multiplier-bool", {**PAPER, "multiplier": True}, "multiplier"),
    ("multiplier-word", {**PAPER, "multiplier": "lots"}, "multiplier"),
    ("fixed-capital-negative", {**PAPER, "capital_mode": "fixed", "fixed_capital": "-5"}, "fixed_capital"),
    ("fixed-capital-huge", {**PAPER, "capital_mode": "fixed", "fixed_capital": "1e30"}, "fixed_capital"),
    ("fixed-capital-without-mode", {**PAPER, "fixed_capital": "100000"}, "fixed_capital"),
    ("fixed-mode-without-capital", {**PAPER, "capital_mode": "fixed"}, "fixed_capital"),
    ("capital-mode-unknown", {**PAPER, "capital_mode": "everything"}, "capital_mode"),
    ("consent-string", {**PAPER, "consent": "yes"}, "consent"),
    ("master-string", {**PAPER, "master": "true"}, "master"),
    ("paper-with-credentials", {**PAPER, "api_key": API_KEY}, "api_key"),
    ("kite-without-secret", {"broker": "kite", "user_id": "HK1", "api_key": API_KEY}, "api_key"),
    ("kite-malformed-key", {**KITE, "api_key": "bad key!"}, "api_key"),
    ("kite-short-secret", {**KITE, "api_secret": "abc"}, "api_secret"),
    ("kite-long-secret", {**KITE, "api_secret": LONG}, "api_secret"),
    ("kite-secret-number", {**KITE, "api_secret": 123456789}, "api_secret"),
    ("kite-token-markup", {**KITE, "access_token": MARKUP}, "access_token"),
    ("unknown-field", {**PAPER, "is_staff": True}, "is_staff"),
    ("second-master", {**PAPER, "master": True}, "master"),
]

PATCH_CASES = [
    ("multiplier-zero", {"multiplier": "0"}, "multiplier"),
    ("multiplier-negative", {"multiplier": "-2"}, "multiplier"),
    ("multiplier-huge", {"multiplier": 1e30}, "multiplier"),
    ("multiplier-null", {"multiplier": None}, "multiplier"),
    ("multiplier-too-precise", {"multiplier": "1.000001"}, "multiplier"),
    ("max-quantity-negative", {"max_quantity": -5}, "max_quantity"),
    ("max-quantity-huge", {"max_quantity": 10**30}, "max_quantity"),
    ("max-quantity-float-huge", {"max_quantity": 1e30}, "max_quantity"),
    ("max-quantity-fraction", {"max_quantity": "12.5"}, "max_quantity"),
    ("max-quantity-bool", {"max_quantity": True}, "max_quantity"),
    ("max-order-value-huge", {"max_order_value": "1e30"}, "max_order_value"),
    ("daily-loss-negative", {"daily_loss_limit": "-100"}, "daily_loss_limit"),
    ("instruments-not-a-list", {"allowed_instruments": "NFO:NIFTY25DECFUT"}, "allowed_instruments"),
    ("instruments-malformed", {"allowed_instruments": ["nifty future"]}, "allowed_instruments"),
    ("instruments-unknown", {"allowed_instruments": ["NFO:NOSUCH25FUT"]}, "allowed_instruments"),
    ("instruments-number", {"blocked_instruments": [123]}, "blocked_instruments.0"),
    ("instruments-markup", {"blocked_instruments": [MARKUP]}, "blocked_instruments"),
    ("products-unknown", {"allowed_products": ["XYZ"]}, "allowed_products"),
    ("fixed-mode-without-capital", {"capital_mode": "fixed"}, "fixed_capital"),
    ("fixed-capital-without-mode", {"fixed_capital": "5000"}, "fixed_capital"),
    ("display-name-long", {"display_name": LONG}, "display_name"),
    ("display-name-list", {"display_name": ["a"]}, "display_name"),
    ("dry-run-string", {"dry_run": "yes"}, "dry_run"),
    ("status-unknown", {"status": "exploded"}, "status"),
    ("status-number", {"status": 1}, "status"),
    ("reason-without-status", {"reason": "why not"}, "reason"),
    ("reason-long", {"status": "paused", "reason": LONG}, "reason"),
    ("proxy-not-a-url", {"proxy_url": "javascript:alert(1)"}, "proxy_url"),
    ("owner-unknown", {"owner": "nobody"}, "owner"),
    ("paper-credentials", {"api_key": API_KEY}, "api_key"),
    ("unknown-field", {"role": "master"}, "role"),
    ("valid-and-invalid-together", {"display_name": "fine", "multiplier": "-1"}, "multiplier"),
]


def _snapshot():
    """Every account row (all columns) and the audit row count."""
    rows = {a.pk: model_to_dict(a) for a in Account.objects.all()}
    return rows, ReplicationEvent.objects.count()


def _assert_refused(response, field, before):
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"code", "message", "fields"}
    assert body["code"] and body["message"]
    assert any(name == field or name.startswith(f"{field}.") for name in body["fields"]), body
    assert _snapshot() == before
    assert LONG not in response.content.decode()  # errors never echo 10k of input back


@pytest.mark.parametrize(("case", "body", "field"), LINK_CASES, ids=[c[0] for c in LINK_CASES])
def test_api_link_hostile_input_refused_without_changes(people, case, body, field):
    MasterAccountFactory()
    AccountFactory(broker_user_id="HOSTILE1", owner=people.alice)
    before = _snapshot()

    response = people.as_staff.post(f"{API}/accounts/link", body, format="json")

    _assert_refused(response, field, before)


@pytest.mark.parametrize(("case", "body", "field"), PATCH_CASES, ids=[c[0] for c in PATCH_CASES])
def test_api_patch_hostile_input_refused_without_changes(people, case, body, field):
    account = AccountFactory(owner=people.alice)
    before = _snapshot()

    response = people.as_staff.patch(f"{API}/accounts/{account.pk}", body, format="json")

    _assert_refused(response, field, before)


@pytest.mark.parametrize(
    ("case", "raw"),
    [("malformed-json", "{not json"), ("json-array", "[1, 2, 3]"), ("json-string", '"paper"'), ("empty", "")],
)
def test_api_link_unparseable_bodies_refused(people, case, raw):
    before = _snapshot()

    response = people.as_staff.post(f"{API}/accounts/link", raw, content_type="application/json")

    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "fields"}
    assert _snapshot() == before


def test_api_link_form_encoded_body_refused(people):
    response = people.as_staff.post(f"{API}/accounts/link", {"broker": "paper", "user_id": "F1"})

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert not Account.objects.filter(broker_user_id="F1").exists()


def test_api_second_master_message_points_to_promotion(people):
    master = MasterAccountFactory()

    response = people.as_staff.post(f"{API}/accounts/link", {**PAPER, "master": True}, format="json")

    assert response.json()["code"] == "master_exists"
    assert f"account {master.pk}" in response.json()["message"] and "promote" in response.json()["message"]


@pytest.mark.parametrize("name", [MARKUP, SQL])
def test_api_markup_and_sql_in_names_stored_verbatim_and_escaped_in_admin(people, admin_client, name):
    response = people.as_alice.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "VERBATIM1", "name": name}, format="json"
    )

    assert response.status_code == 201
    account_id = response.json()["account"]["id"]
    assert response.json()["account"]["display_name"] == name
    assert json.loads(people.as_alice.get(f"{API}/accounts/{account_id}").content)["display_name"] == name
    assert Account.objects.get(pk=account_id).display_name == name
    assert Account.objects.count() >= 1  # the table is still there
    for url in (
        reverse("admin:accounts_account_changelist"),
        reverse("admin:accounts_account_change", args=[account_id]),
    ):
        page = admin_client.get(url).content.decode()
        if name == MARKUP:
            assert MARKUP not in page
            assert "&lt;script&gt;alert(" in page
        else:
            assert "Robert&#x27;); DROP TABLE accounts_account; --" in page
