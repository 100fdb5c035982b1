"""Every change made through the API writes one ReplicationEvent: who (the username), when, and
before -> after, with credentials shown only as "***"."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from brokers.paper.models import PaperAccount
from replication.models import ReplicationEvent
from tests.api_helpers import API, API_SECRET
from tests.factories import AccountFactory, KiteAccountFactory, MasterAccountFactory

pytestmark = pytest.mark.django_db

# The paper user ids these tests link: account_link refuses one the paper exchange does not
# know (issue 11 defect 15), so they are opened first.
PAPER_ACCOUNTS = ("AUD1",)


@pytest.fixture(autouse=True)
def paper_accounts_open(db):
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=user_id, cash=Decimal("1000000")) for user_id in PAPER_ACCOUNTS]
    )


NEW_SECRET = "auditnewsecret3344"
NEW_TOKEN = "auditnewtoken556677"

# (id, who calls, method, path, body, expected kind, a field with before -> after, its after value)
CHANGES = [
    (
        "link",
        "alice",
        "post",
        "/accounts/link",
        {"broker": "paper", "user_id": "AUD1"},
        "account.linked",
        "broker_user_id",
        "AUD1",
    ),
    (
        "settings",
        "alice",
        "patch",
        "/accounts/{child}",
        {"max_quantity": 50},
        "account.settings_updated",
        "max_quantity",
        50,
    ),
    (
        "staff-settings",
        "operator",
        "patch",
        "/accounts/{child}",
        {"multiplier": "3"},
        "account.settings_updated",
        "multiplier",
        "3.0000",
    ),
    (
        "pause",
        "alice",
        "patch",
        "/accounts/{child}",
        {"status": "paused", "reason": "r"},
        "account.status_changed",
        "status",
        "paused",
    ),
    (
        "halt",
        "operator",
        "patch",
        "/accounts/{child}",
        {"status": "halted"},
        "account.status_changed",
        "status",
        "halted",
    ),
    (
        "consent",
        "alice",
        "post",
        "/accounts/{child}/consent",
        {"version": "2027-01"},
        "account.consent_given",
        "consent_version",
        "2027-01",
    ),
    (
        "credentials",
        "alice",
        "patch",
        "/accounts/{kite}",
        {"api_secret": NEW_SECRET, "access_token": NEW_TOKEN},
        "account.credentials_changed",
        "api_secret",
        "***",
    ),
    (
        "promote",
        "operator",
        "post",
        "/accounts/{child}/promote-master",
        None,
        "account.master_promoted",
        "role",
        "master",
    ),
    ("unlink", "alice", "delete", "/accounts/{kite}", None, "account.unlinked", "status", "disabled"),
]


@pytest.mark.parametrize(
    ("case", "who", "method", "path", "body", "kind", "field", "after"), CHANGES, ids=[c[0] for c in CHANGES]
)
def test_api_change_writes_one_audit_row(people, case, who, method, path, body, kind, field, after):
    MasterAccountFactory()
    child = AccountFactory(owner=people.alice, consent_version="v1")
    kite = KiteAccountFactory(owner=people.alice, api_secret=API_SECRET)
    client = {"alice": people.as_alice, "operator": people.as_staff}[who]
    url = API + path.format(child=child.pk, kite=kite.pk)
    started = timezone.now()
    known = set(ReplicationEvent.objects.values_list("pk", flat=True))

    response = getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)

    assert response.status_code in (200, 201), response.content
    new = ReplicationEvent.objects.exclude(pk__in=known).filter(kind=kind)
    assert new.count() == 1
    event = new.get()
    assert event.actor == who
    assert started - timedelta(seconds=1) <= event.created_at <= timezone.now()
    assert set(event.data[field]) == {"before", "after"}
    assert event.data[field]["after"] == after
    dumped = json.dumps(event.data) + event.message
    for secret in (API_SECRET, NEW_SECRET, NEW_TOKEN):
        assert secret not in dumped


def test_api_refused_change_writes_no_audit_row(people):
    child = AccountFactory(owner=people.alice, max_quantity=10)
    before = ReplicationEvent.objects.count()

    people.as_alice.patch(f"{API}/accounts/{child.pk}", {"max_quantity": 20}, format="json")
    people.as_alice.patch(f"{API}/accounts/{child.pk}", {"multiplier": "-1"}, format="json")
    people.as_bob.patch(f"{API}/accounts/{child.pk}", {"max_quantity": 5}, format="json")

    assert ReplicationEvent.objects.count() == before
