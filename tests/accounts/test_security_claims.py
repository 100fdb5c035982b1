"""Issue 12 item 3: a client's link only claims a broker user id. The claim stays pending (never
traded, never in the way of the real owner) until a broker login as that user proves it; a paper
book behind a linked broker account cannot be linked again."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Account, AccountStatus, Broker, Ownership, Role
from accounts.services.linking import account_claim_prove
from accounts.validation import AccountError
from brokers.kite import session as kite_session
from brokers.kite.session import SessionResult
from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_account_open
from brokers.simcreds import API_KEY_CHARS, new_simulator_credential
from replication.gate import Action, ChildSwitches, Switches, decide
from replication.models import OrderMapping, ReplicationEvent
from replication.orchestrator import Orchestrator
from tests.engine_helpers import FUT, build_desk
from tests.factories import StaffFactory, UserFactory
from tests.kite_sim_helpers import kite_settings, running_sim, sim_session

LINK = "/api/v1/accounts/link"
PLACE = "POST /orders/{variety}"
OWNER_ID = "ZB1234"  # bob's Zerodha user id (on the simulator: the paper book of that id)


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


@pytest.fixture
def staff(db):
    return StaffFactory(username="operator")


def run_entry(orch: Orchestrator, desk) -> None:
    """The master buys 2 lots of the future; the engine's ticks replicate it."""
    orch.run_tick()  # first look: the master's book so far is known
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()


@pytest.fixture
def orch() -> Iterator[Orchestrator]:
    o = Orchestrator(holder="claims-test", workers=0)
    yield o
    o.close()


# --- a claim of someone else's id never trades and never blocks the owner -------------------------


@pytest.mark.django_db
def test_security_claims_paper_claim_never_trades_and_never_blocks_the_owner(alice, bob, staff, orch):
    """Issue 12 item 3: alice links bob's (still unlinked) paper book with consent: 201, pending.
    A master entry replicates to every child but her claim: nothing reaches that book, no child
    order. bob then links the same id: 201 (not 409 already_linked). Once staff vouch for bob's
    claim, alice's is dropped and bob's account trades."""
    desk = build_desk()
    paper_account_open(user_id="ZP1", cash=Decimal("1000000"))

    claimed = api(alice).post(LINK, {"broker": "paper", "user_id": "ZP1", "consent": True}, format="json")

    assert claimed.status_code == 201, claimed.content
    assert claimed.json()["account"]["ownership"] == "pending"
    alices = Account.objects.get(pk=claimed.json()["account"]["id"])
    run_entry(orch, desk)
    assert not PaperOrder.objects.filter(account__user_id="ZP1").exists()
    assert not OrderMapping.objects.filter(child=alices).exists()
    assert OrderMapping.objects.filter(child=desk.children["C1"]).exists()  # the others did trade

    owners = api(bob).post(LINK, {"broker": "paper", "user_id": "ZP1", "consent": True}, format="json")

    assert owners.status_code == 201, owners.content
    bobs = Account.objects.get(pk=owners.json()["account"]["id"])
    assert bobs.pk != alices.pk and bobs.owner == bob and bobs.is_pending
    alices.refresh_from_db()
    assert alices.owner == alice and alices.is_pending  # nothing of alice's changed either

    vouched = api(staff).post(
        LINK, {"broker": "paper", "user_id": "ZP1", "owner": "bob"}, format="json"
    )  # staff vouch for bob's claim

    assert vouched.status_code == 200, vouched.content
    assert vouched.json()["account"]["id"] == bobs.pk
    assert vouched.json()["account"]["ownership"] == "vouched"
    alices.refresh_from_db()
    assert alices.status == AccountStatus.DISABLED
    assert ReplicationEvent.objects.filter(kind="account.claim_dropped", account=alices).exists()
    again = api(alice).post(LINK, {"broker": "paper", "user_id": "ZP1"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_linked"
    desk.place("BUY", FUT, 75)
    orch.run_tick()
    orch.run_tick()
    assert PaperOrder.objects.filter(account__user_id="ZP1").exists()
    assert not OrderMapping.objects.filter(child=alices).exists()


@pytest.mark.django_db(transaction=True)
def test_security_claims_kite_claim_with_a_live_session_never_reaches_the_broker(alice, bob, orch):
    """Issue 12 item 3: alice claims bob's Kite user id, even with an api key and access token the
    broker accepts: a tick with a master entry sends nothing to that account's broker (no order
    write, no child order), and bob's link of the same id is a 201, not 409."""
    desk = build_desk()
    paper_account_open(user_id=OWNER_ID, cash=Decimal("1000000"))
    with running_sim() as running, kite_settings(running.root):
        session = sim_session(running, OWNER_ID)
        claimed = api(alice).post(
            LINK,
            {
                "broker": "kite",
                "user_id": OWNER_ID,
                "api_key": session.api_key,
                "api_secret": "madeupsecret0123456789",
                "access_token": session.access_token,
                "consent": True,
            },
            format="json",
        )
        assert claimed.status_code == 201, claimed.content
        body = claimed.json()
        assert body["account"]["ownership"] == "pending"
        assert body["login_url"]  # the login that would prove it

        run_entry(orch, desk)

        assert running.sim.hit_count(user_id=OWNER_ID, route=PLACE) == 0
        assert not PaperOrder.objects.filter(account__user_id=OWNER_ID).exists()
        assert not OrderMapping.objects.filter(child_id=body["account"]["id"]).exists()

        owners = api(bob).post(
            LINK,
            {
                "broker": "kite",
                "user_id": OWNER_ID.lower(),
                "api_key": new_simulator_credential(API_KEY_CHARS),
                "api_secret": "bobsownsecret0123456789",
                "consent": True,
            },
            format="json",
        )
        assert owners.status_code == 201, owners.content
        assert owners.json()["account"]["ownership"] == "pending"


@pytest.mark.django_db(transaction=True)
def test_security_claims_owner_login_proves_the_claim_which_then_trades(alice, bob, orch, client):
    """Issue 12 item 3: alice claims bob's Kite id with made-up credentials; bob links it with his
    own app (201) and completes his daily login at the simulator: his account is proven, alice's
    claim is dropped (disabled, credentials forgotten, audited) and refused from then on, and the
    next master entry reaches bob's book."""
    desk = build_desk()
    paper_account_open(user_id=OWNER_ID, cash=Decimal("1000000"))
    bob_key = new_simulator_credential(API_KEY_CHARS)
    bob_secret = "bobsownsecret0123456789"
    made_up = {"api_key": "madeupkey0001", "api_secret": "madeupsecret0123456789"}
    claim = api(alice).post(
        LINK, {"broker": "kite", "user_id": OWNER_ID, **made_up, "consent": True}, format="json"
    )
    assert claim.status_code == 201, claim.content
    alices = Account.objects.get(pk=claim.json()["account"]["id"])
    owners = api(bob).post(
        LINK,
        {
            "broker": "kite",
            "user_id": OWNER_ID,
            "api_key": bob_key,
            "api_secret": bob_secret,
            "consent": True,
        },
        format="json",
    )
    assert owners.status_code == 201, owners.content
    bobs = Account.objects.get(pk=owners.json()["account"]["id"])

    with running_sim() as running:
        running.sim.store.register_app(
            api_key=bob_key,
            api_secret=bob_secret,
            redirect_url="http://testserver/accounts/kite/callback/",
            user_id=OWNER_ID,
        )
        client.force_login(bob)
        with override_settings(KITE_LOGIN_URL=f"{running.root}/connect/login", KITE_API_ROOT=running.root):
            to_kite = client.get(reverse("kite:login", args=[bobs.pk]))
            from_kite = requests.get(to_kite["Location"], allow_redirects=False, timeout=5)
            back = urlsplit(from_kite.headers["Location"])
            page = client.get(f"{back.path}?{back.query}")
        assert page.status_code == 200, page.content

        bobs.refresh_from_db()
        alices.refresh_from_db()
        assert bobs.ownership == Ownership.PROVEN and bobs.ownership_proven_at is not None
        assert ReplicationEvent.objects.filter(kind="account.claim_proven", account=bobs).exists()
        assert alices.status == AccountStatus.DISABLED and alices.is_pending
        assert (alices.api_key, alices.api_secret, alices.access_token) == ("", "", "")
        dropped = ReplicationEvent.objects.get(kind="account.claim_dropped", account=alices)
        assert "madeup" not in str(dropped.data)
        again = api(alice).post(LINK, {"broker": "kite", "user_id": OWNER_ID, **made_up}, format="json")
        assert again.status_code == 409 and again.json()["code"] == "already_linked"

        with kite_settings(running.root):
            run_entry(orch, desk)

        assert running.sim.hit_count(user_id=OWNER_ID, route=PLACE, status=200) >= 1
        assert PaperOrder.objects.filter(account__user_id=OWNER_ID, quantity__gt=0).exists()
        assert OrderMapping.objects.filter(child=bobs).exists()
        assert not OrderMapping.objects.filter(child=alices).exists()


@pytest.mark.django_db
def test_security_claims_a_dropped_or_rival_claim_cannot_be_proven(alice, bob, client, monkeypatch):
    """Issue 12 item 3: once bob's claim is proven by his login, alice's claim of the same id is
    dropped: its Kite login cannot even start (its credentials are forgotten), and proving it is
    refused with already_linked; nothing of bob's changes."""
    monkeypatch.setattr(
        kite_session,
        "exchange_request_token",
        lambda **_: SessionResult(
            access_token="livetoken0123456789", user_id=OWNER_ID, login_time=timezone.now()
        ),
    )
    accounts = {}
    for user in (alice, bob):
        response = api(user).post(
            LINK,
            {"broker": "kite", "user_id": OWNER_ID}
            | {"api_key": "appkey0001", "api_secret": "appsecret0123456789"},
            format="json",
        )
        assert response.status_code == 201, response.content
        accounts[user.username] = Account.objects.get(pk=response.json()["account"]["id"])

    client.force_login(bob)
    started = client.get(reverse("kite:login", args=[accounts["bob"].pk]))
    passed = parse_qs(parse_qs(urlsplit(started["Location"]).query)["redirect_params"][0])
    done = client.get(
        reverse("kite:callback"),
        {"request_token": "reqtoken123", "status": "success", **{k: v[0] for k, v in passed.items()}},
    )
    assert done.status_code == 200, done.content

    client.force_login(alice)
    assert client.get(reverse("kite:login", args=[accounts["alice"].pk])).status_code == 400
    with pytest.raises(AccountError) as refused:
        account_claim_prove(account=accounts["alice"], actor="test")
    assert refused.value.code == "already_linked"
    alices = Account.objects.get(pk=accounts["alice"].pk)
    assert alices.is_pending and alices.status == AccountStatus.DISABLED and alices.access_token == ""
    assert Account.objects.get(pk=accounts["bob"].pk).ownership == Ownership.PROVEN


# --- the paper book behind a broker account ---------------------------------------------------------


@pytest.mark.django_db
def test_security_claims_paper_book_behind_a_kite_account_cannot_be_linked(alice, staff):
    """Issue 12 item 3: on the simulator demo the master and the children are Kite accounts whose
    books are the paper accounts of the same user ids. Linking those paper books (the master's or
    a child's) is refused with 409 already_linked, for a client and for staff, and writes nothing."""
    desk = build_desk()
    Account.objects.filter(pk__in=[desk.master.pk, desk.children["C1"].pk]).update(broker=Broker.KITE)
    count = Account.objects.count()

    for user, user_id in ((alice, "MASTER"), (alice, "C1"), (staff, "C1")):
        response = api(user).post(
            LINK, {"broker": "paper", "user_id": user_id, "consent": True}, format="json"
        )

        assert response.status_code == 409, (user.username, user_id, response.content)
        answer = response.json()
        assert answer["code"] == "already_linked"
        assert "book behind" in answer["message"]
    assert Account.objects.count() == count
    assert not PaperOrder.objects.exclude(account__user_id="MASTER").exists()


# --- the gate, the API and the staff screens show and respect pending claims --------------------------


def test_security_claims_send_gate_sends_nothing_for_a_pending_claim():
    """Issue 12 item 3: the send gate refuses every order write (entries, exits, modifications,
    cancels) of a pending claim, whatever else its switches say."""
    engine = Switches(halted=False, paused=False, dry_run=False)
    pending = ChildSwitches(
        7, AccountStatus.ACTIVE, Role.CHILD, consent_given_at=None, ownership=Ownership.PENDING
    )
    proven = ChildSwitches(7, AccountStatus.ACTIVE, Role.CHILD, ownership=Ownership.PROVEN)

    for action in Action:
        verdict = decide(action, engine, pending)
        assert (verdict.send, verdict.code) == (False, "ownership_pending"), action
    assert decide(Action.EXIT, engine, proven).send


@pytest.mark.django_db
def test_security_claims_pending_state_shows_in_the_api_admin_and_dashboard(alice, staff, client):
    """Issue 12 item 3: a pending claim says so in the API (ownership), the admin's account list and
    the staff dashboard's overview."""
    build_desk()
    paper_account_open(user_id="ZP2", cash=Decimal("500000"))
    response = api(alice).post(
        LINK, {"broker": "paper", "user_id": "ZP2", "name": "Alice claim", "consent": True}, format="json"
    )
    account_id = response.json()["account"]["id"]

    detail = api(alice).get(f"/api/v1/accounts/{account_id}").json()
    client.force_login(StaffFactory(username="admin-op", is_superuser=True))
    admin_list = client.get(reverse("admin:accounts_account_changelist")).content.decode()
    overview = client.get(reverse("dashboard:overview")).content.decode()

    assert detail["ownership"] == "pending" and detail["ownership_proven_at"] is None
    assert "pending proof" in _row(admin_list, "ZP2").lower()
    assert "pending" in _row(overview, "Alice claim").lower()
    assert "pending" not in _row(overview, ">C1<").lower()


def _row(page: str, marker: str) -> str:
    start = page.index(marker)
    return page[page.rindex("<tr", 0, start) : page.index("</tr>", start)]
