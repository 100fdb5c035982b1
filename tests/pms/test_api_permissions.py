"""Every API endpoint against every kind of caller: anonymous, the owner, another client, staff."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.throttling import ScopedRateThrottle

from accounts.models import Account, AccountStatus, Role
from brokers.paper.models import PaperAccount
from replication.models import ReplicationEvent
from tests.api_helpers import API, seed_allocation
from tests.factories import AccountFactory, MasterAccountFactory

pytestmark = pytest.mark.django_db

# The paper user ids these tests link: account_link refuses one the paper exchange does not
# know (issue 11 defect 15), so they are opened first.
PAPER_ACCOUNTS = ("MATRIX1", "NEWB", "NEWM", "T0", "T1", "T2")


@pytest.fixture(autouse=True)
def paper_accounts_open(db):
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=user_id, cash=Decimal("1000000")) for user_id in PAPER_ACCOUNTS]
    )


@pytest.fixture
def world(people):
    """alice owns a child account with one pending replicated order; bob owns another account."""
    master = MasterAccountFactory()
    mine = AccountFactory(owner=people.alice, display_name="alice's")
    AccountFactory(owner=people.bob, display_name="bob's")
    allocation = seed_allocation(master, mine, filled=0)  # pending only: nothing held yet
    return {"people": people, "mine": mine, "allocation": allocation, "master": master}


# (name, method, path, body, expected status: owner, other client, staff)
OPERATIONS = [
    ("list", "get", "/accounts", None, (200, 200, 200)),
    ("link", "post", "/accounts/link", {"broker": "paper", "user_id": "MATRIX1"}, (201, 201, 201)),
    ("detail", "get", "/accounts/{account}", None, (200, 404, 200)),
    ("settings", "patch", "/accounts/{account}", {"display_name": "renamed"}, (200, 404, 200)),
    ("pause", "patch", "/accounts/{account}", {"status": "paused", "reason": "holiday"}, (200, 404, 200)),
    ("consent", "post", "/accounts/{account}/consent", {}, (200, 404, 200)),
    ("promote", "post", "/accounts/{account}/promote-master", None, (403, 403, 200)),
    ("positions", "get", "/accounts/{account}/positions", None, (200, 404, 200)),
    ("events", "get", "/replication/events", None, (200, 200, 200)),
    ("allocation", "get", "/replication/allocations/{allocation}", None, (200, 404, 200)),
    ("unlink-forced", "delete", "/accounts/{account}?force=true&reason=closing", None, (403, 404, 200)),
    ("unlink-plain", "delete", "/accounts/{account}", None, (409, 404, 409)),
]


def _call(client, method, path, body, world):
    url = API + path.format(account=world["mine"].pk, allocation=world["allocation"].pk)
    return (
        getattr(client, method)(url, body, format="json")
        if body is not None
        else getattr(client, method)(url)
    )


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "expected"), OPERATIONS, ids=[o[0] for o in OPERATIONS]
)
def test_api_anonymous_gets_401_with_challenge(world, name, method, path, body, expected):
    before = (Account.objects.count(), ReplicationEvent.objects.count())

    response = _call(world["people"].anonymous, method, path, body, world)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"
    assert (Account.objects.count(), ReplicationEvent.objects.count()) == before


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "expected"), OPERATIONS, ids=[o[0] for o in OPERATIONS]
)
@pytest.mark.parametrize("caller", ["owner", "other", "staff"])
def test_api_permission_matrix(world, name, method, path, body, expected, caller):
    people = world["people"]
    client = {"owner": people.as_alice, "other": people.as_bob, "staff": people.as_staff}[caller]
    want = expected[("owner", "other", "staff").index(caller)]

    response = _call(client, method, path, body, world)

    assert response.status_code == want, response.content
    if want >= 400:
        assert set(response.json()) == {"code", "message", "fields"}


def test_api_list_shows_clients_only_their_accounts(world):
    people = world["people"]

    mine = {a["id"] for a in people.as_alice.get(f"{API}/accounts").json()["results"]}
    theirs = {a["id"] for a in people.as_bob.get(f"{API}/accounts").json()["results"]}
    everything = {a["id"] for a in people.as_staff.get(f"{API}/accounts").json()["results"]}

    assert mine == {world["mine"].pk}
    assert world["mine"].pk not in theirs and len(theirs) == 1
    assert everything == set(Account.objects.values_list("pk", flat=True))


def test_api_events_show_clients_only_events_touching_them(world):
    people = world["people"]

    alice = people.as_alice.get(f"{API}/replication/events").json()
    bob = people.as_bob.get(f"{API}/replication/events").json()
    staff = people.as_staff.get(f"{API}/replication/events").json()

    assert [e["id"] for e in alice["results"]] == [world["allocation"].pk]
    assert alice["results"][0]["master_capital"] is None  # the master's money is staff-only
    assert bob["count"] == 0
    assert staff["results"][0]["master_capital"] == "1000000.00"


def test_api_client_changes_to_others_account_change_nothing(world):
    people = world["people"]
    theirs = Account.objects.get(owner=people.bob)

    response = people.as_alice.patch(f"{API}/accounts/{theirs.pk}", {"status": "halted"}, format="json")

    assert response.status_code == 404
    assert Account.objects.get(pk=theirs.pk).status == AccountStatus.ACTIVE


def test_api_client_cannot_link_a_master_or_for_someone_else(world):
    people = world["people"]
    Account.objects.filter(role=Role.MASTER).update(status=AccountStatus.DISABLED)
    count = Account.objects.count()

    as_master = people.as_alice.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "NEWM", "master": True}, format="json"
    )
    for_bob = people.as_alice.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": "NEWB", "owner": "bob"}, format="json"
    )

    assert (as_master.status_code, for_bob.status_code) == (403, 403)
    assert "master" in as_master.json()["fields"] and "owner" in for_bob.json()["fields"]
    assert Account.objects.count() == count


def test_api_client_cannot_relink_someone_elses_account(world):
    people = world["people"]
    theirs = Account.objects.get(owner=people.bob)

    response = people.as_alice.post(
        f"{API}/accounts/link", {"broker": "paper", "user_id": theirs.broker_user_id}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "already_linked"
    assert Account.objects.get(pk=theirs.pk).owner == people.bob


def test_api_token_endpoint_issues_tokens_and_refuses_bad_passwords(world):
    people = world["people"]

    good = people.anonymous.post(
        f"{API}/auth/token", {"username": "alice", "password": "pass-for-tests-only"}, format="json"
    )
    bad = people.anonymous.post(f"{API}/auth/token", {"username": "alice", "password": "nope"}, format="json")

    assert good.status_code == 200
    assert (
        people.anonymous.get(
            f"{API}/accounts", HTTP_AUTHORIZATION=f"Token {good.json()['token']}"
        ).status_code
        == 200
    )
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_login"


def test_api_bad_token_is_401(world):
    response = world["people"].anonymous.get(f"{API}/accounts", HTTP_AUTHORIZATION="Token not-a-real-token")

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_api_session_login_works(world, client):
    client.force_login(world["people"].alice)

    assert client.get(f"{API}/accounts/{world['mine'].pk}").status_code == 200


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_api_schema_and_docs_need_login(world, path):
    people = world["people"]

    assert people.anonymous.get(path).status_code == 401
    assert people.as_alice.get(path).status_code == 200
    assert people.as_staff.get(path).status_code == 200


def test_api_link_and_login_are_throttled(world, monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"link": "2/min", "login": "2/min"})
    people = world["people"]

    links = [
        people.as_alice.post(f"{API}/accounts/link", {"broker": "paper", "user_id": f"T{i}"}, format="json")
        for i in range(3)
    ]
    logins = [
        people.anonymous.post(f"{API}/auth/token", {"username": "alice", "password": "x"}, format="json")
        for _ in range(3)
    ]

    assert [r.status_code for r in links] == [201, 201, 429]
    assert [r.status_code for r in logins] == [400, 400, 429]
    assert links[-1].json()["code"] == "throttled"
    assert int(links[-1]["Retry-After"]) > 0
    # other endpoints are not throttled by these scopes
    assert people.as_alice.get(f"{API}/accounts").status_code == 200


@pytest.mark.parametrize("path", ["/accounts/abc", "/accounts/-1/consent", "/nothing/here", "/accounts/1%0A"])
def test_api_unknown_paths_answer_json_404(world, path):
    response = world["people"].as_staff.post(f"{API}{path}", {}, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
