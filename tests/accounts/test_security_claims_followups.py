"""Issue 12 item 3 follow-ups: a pending claim (a client's link not yet proven by a broker login) is
never promoted, is audited like every other field, is not reconciled or read through the positions
endpoint, is not a login staff are asked to do, and does not stand in the way of the demo seeding or
a broker switch of the vouched-for account with the same user id."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core import mail
from django.test import override_settings

from accounts.management.commands.seed_demo import seed_demo
from accounts.models import Account, AccountStatus, Broker, Ownership, Role
from accounts.services import account_link, account_switch_broker
from accounts.services.linking import account_claim_vouch
from brokers.paper.services import paper_account_open
from replication.dashboard import selectors as dashboard_selectors
from replication.login_check import accounts_needing_login, login_check_task
from replication.models import ReplicationEvent
from replication.orchestrator import Orchestrator
from replication.reconciliation import reconcile, reconciliation_sweep
from tests.api_helpers import API, API_KEY, API_SECRET
from tests.engine_helpers import FUT, build_desk
from tests.factories import AccountFactory, KiteAccountFactory, MasterAccountFactory, StaffFactory

pytestmark = pytest.mark.django_db

MONDAY_0845_IST = datetime(2026, 1, 5, 3, 15, tzinfo=UTC)


def _claim(owner, *, broker: str = Broker.KITE, user_id: str = "ZC1234") -> Account:
    """`owner`'s pending claim of `broker:user_id`, linked as the API links a client's account."""
    if broker == Broker.PAPER:
        paper_account_open(user_id=user_id, cash=Decimal("1000000"))
        credentials = {}
    else:
        credentials = {"api_key": API_KEY, "api_secret": API_SECRET}
    account, created = account_link(
        broker=broker,
        user_id=user_id,
        owner=owner,
        consent=True,
        actor=owner.username,
        claim=True,
        **credentials,
    )
    assert created and account.is_pending
    return account


# --- 1. promote ----------------------------------------------------------------------------------


def test_security_claims_followups_promoting_a_pending_claim_is_refused(people):
    """Issue 12 item 3: staff promoting a client's pending claim to master get a 400 in the usual
    error shape (code master_unproven), not a 500 from the database check; the master stays."""
    master = MasterAccountFactory()
    claim = _claim(people.alice, broker=Broker.PAPER, user_id="PC1")

    response = people.as_staff.post(f"{API}/accounts/{claim.pk}/promote-master")

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "master_unproven" and "proven" in body["message"]
    assert set(body) == {"code", "message", "fields"}
    claim.refresh_from_db()
    master.refresh_from_db()
    assert (claim.role, master.role) == (Role.CHILD, Role.MASTER)
    assert not ReplicationEvent.objects.filter(kind="account.master_promoted").exists()


# --- 2. audit ------------------------------------------------------------------------------------


def test_security_claims_followups_vouching_audits_ownership_and_its_time(people):
    """Issue 12 item 3: vouching for a claim audits both ownership fields (before and after): the
    ownership and the time it was settled, as every other audited account field is."""
    claim = _claim(people.alice, broker=Broker.PAPER, user_id="PC2")

    account_claim_vouch(account=claim, actor="operator")

    event = ReplicationEvent.objects.get(kind="account.claim_vouched", account=claim)
    assert event.data["ownership"] == {"before": "pending", "after": "vouched"}
    assert event.data["ownership_proven_at"]["before"] is None
    assert event.data["ownership_proven_at"]["after"] is not None
    stored = Account.objects.get(pk=claim.pk)
    assert stored.ownership == Ownership.VOUCHED and stored.ownership_proven_at is not None


# --- 3. and 6. reconciliation and the positions endpoint -------------------------------------------


@pytest.fixture
def traded():
    """The §3.6 desk after the master bought 2 lots of the future (every child holds some)."""
    desk = build_desk()
    orch = Orchestrator(holder="claims-followups", workers=0)
    try:
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
        orch.run_tick()
    finally:
        orch.close()
    return desk


def test_security_claims_followups_reconcile_leaves_pending_accounts_out(traded):
    """Issue 12 item 3: an account whose ownership is pending (here C2's row, set pending in the
    table) is not reconciled: no drift for it from reconcile() or the recorded sweep, so its
    book is not read; the other children still are."""
    child = traded.children["C2"]
    Account.objects.filter(pk=child.pk).update(ownership=Ownership.PENDING)

    drifts = reconcile()
    swept = reconciliation_sweep(actor="test")
    explicit = reconcile(children=[Account.objects.get(pk=child.pk)])

    assert child.pk not in {d.child_id for d in drifts}
    assert traded.children["C1"].pk in {d.child_id for d in drifts}
    assert child.pk not in {d.child_id for d in swept}
    assert explicit == []


def test_security_claims_followups_positions_endpoint_refuses_a_pending_account(people):
    """Issue 12 item 3: the positions endpoint does not read the broker of a pending claim: a
    409 in the usual error shape (code account_pending), for its owner and for staff."""
    claim = _claim(people.alice, broker=Broker.PAPER, user_id="PC3")

    for client in (people.as_alice, people.as_staff):
        response = client.get(f"{API}/accounts/{claim.pk}/positions")

        assert response.status_code == 409, response.content
        body = response.json()
        assert body["code"] == "account_pending" and set(body) == {"code", "message", "fields"}


# --- 4. the daily login check and the dashboard ------------------------------------------------------


@override_settings(
    EMAIL_HOST="smtp.example.com", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"
)
def test_security_claims_followups_login_check_leaves_pending_claims_out(people):
    """Issue 12 item 3: a stranger's pending Kite claim (no token) is not a login staff are asked
    to do: not listed, not audited, not emailed; a vouched account without a token still is."""
    StaffFactory(username="ops", email="ops@example.com")
    claim = _claim(people.alice, user_id="ZC1234")
    vouched = KiteAccountFactory(broker_user_id="ZV1234", access_token="", token_expires_at=None)

    assert [a.pk for a in accounts_needing_login(MONDAY_0845_IST)] == [vouched.pk]
    summary = login_check_task(MONDAY_0845_IST)

    assert summary == "1 Kite account(s) need a login (staff emailed)"
    assert "ZC1234" not in mail.outbox[0].body and "ZV1234" in mail.outbox[0].body
    assert not ReplicationEvent.objects.filter(kind="account.login_needed", account=claim).exists()


def test_security_claims_followups_dashboard_needs_login_leaves_pending_claims_out(people):
    """Issue 12 item 3: the dashboard's "needs login" list shows no pending claim."""
    claim = _claim(people.alice, user_id="ZC1234")
    vouched = KiteAccountFactory(broker_user_id="ZV1234", access_token="", token_expires_at=None)

    listed = [a.pk for a in dashboard_selectors.accounts_needing_login()]

    assert vouched.pk in listed and claim.pk not in listed


# --- 5. the demo seeding and a broker switch ------------------------------------------------------------


def test_security_claims_followups_seed_demo_on_kite_ignores_a_pending_claim(people):
    """Issue 12 item 3: after the paper demo, a client's pending claim of kite:MASTER1 does not make
    `seed_demo` on Kite (`make run KITE=sim`) fail with master_exists: the paper master moves to
    Kite and stays the master, and the claim is dropped (it was not proven)."""
    seed_demo(broker=Broker.PAPER)
    claim = _claim(people.alice, user_id="MASTER1")

    result = seed_demo(broker=Broker.KITE)

    master = next(seeded.account for seeded in result.accounts if seeded.account.broker_user_id == "MASTER1")
    assert (master.broker, master.role, master.ownership) == (Broker.KITE, Role.MASTER, Ownership.VOUCHED)
    assert master.pk != claim.pk
    claim.refresh_from_db()
    assert claim.is_pending and claim.status == AccountStatus.DISABLED
    assert (
        Account.objects.filter(broker=Broker.KITE, broker_user_id="MASTER1")
        .exclude(ownership=Ownership.PENDING)
        .count()
        == 1
    )


def test_security_claims_followups_broker_switch_ignores_a_pending_claim(people):
    """Issue 12 item 3: a vouched paper account switches to Kite although a client claims the same
    Kite user id (pending); the switch drops that claim, as any settled account does."""
    paper_account_open(user_id="ZS1234", cash=Decimal("1000000"))
    account = AccountFactory(broker_user_id="ZS1234")
    claim = _claim(people.alice, user_id="ZS1234")

    switched = account_switch_broker(account=account, broker=Broker.KITE, actor="operator")

    assert (switched.broker, switched.ownership) == (Broker.KITE, Ownership.VOUCHED)
    claim.refresh_from_db()
    assert claim.status == AccountStatus.DISABLED
    assert ReplicationEvent.objects.filter(kind="account.claim_dropped", account=claim).exists()
