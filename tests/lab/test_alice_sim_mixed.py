"""A mixed desk with Alice Blue (issue 16): the DESIGN §3.6 worked example with Alice Blue children
and with an Alice Blue master, each broker through its real SDK over HTTP to its simulator; and a
session expiry (EC087) that moves only that Alice child to needs_login."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from django.test import override_settings

from accounts.models import Account, AccountStatus
from brokers.alice.budget import forget_budgets
from brokers.angel.budget import forget_budgets as forget_angel_budgets
from brokers.paper.models import PaperOrder
from lab.alice_demo import move_to_alice
from lab.alice_sim.server import RunningSim
from lab.alice_sim.server import start as start_alice
from lab.angel_demo import move_to_angel
from lab.angel_sim.server import RunningSim as AngelRunning
from lab.angel_sim.server import start as start_angel
from lab.demo import Desk, run_script
from replication.models import MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from tests.engine_helpers import build_desk

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sims() -> Iterator[tuple[RunningSim, AngelRunning]]:
    forget_budgets()
    forget_angel_budgets()
    alice = start_alice()
    angel = start_angel()
    try:
        yield alice, angel
    finally:
        alice.stop()
        angel.stop()
        forget_budgets()
        forget_angel_budgets()


def run_worked_example(desk: Desk, alice: RunningSim, angel: AngelRunning) -> list:
    with override_settings(ALICE_API_ROOT=alice.root, ANGEL_API_ROOT=angel.root):
        orch = Orchestrator(holder="alice-mixed-e2e", workers=4)
        try:
            return run_script(desk, orch)
        finally:
            orch.close()


def assert_each_tag_once(desk: Desk) -> None:
    for name, child in desk.children.items():
        tags = {
            m.tag
            for m in OrderMapping.objects.filter(child=child, quantity__gt=0)
            if m.status not in (MappingStatus.FAILED, MappingStatus.SKIPPED)
        }
        placed = Counter(PaperOrder.objects.filter(account__user_id=name).values_list("tag", flat=True))
        assert placed == dict.fromkeys(tags, 1), name


def test_mixed_desk_paper_master_with_alice_angel_and_paper_children(sims):
    alice, angel = sims
    desk = build_desk()
    move_to_alice(desk.children["C1"], alice.sim)
    move_to_alice(desk.children["C2"], alice.sim)
    move_to_angel(desk.children["C4"], angel.sim)

    results = run_worked_example(desk, alice, angel)

    assert [(r.step.title, r.rows, r.errors) for r in results if not r.ok] == []
    for name in ("C1", "C2"):
        assert alice.sim.hit_count(user_id=name, route="placeorder", status=200) >= 1, name
        assert alice.sim.hit_count(user_id=name, route="modify", status=200) == 1, name
        assert alice.sim.hit_count(user_id=name, route="cancel", status=200) == 1, name
    assert_each_tag_once(desk)


def test_mixed_desk_alice_master_with_angel_and_paper_children(sims):
    alice, angel = sims
    desk = build_desk()
    move_to_alice(desk.master, alice.sim)
    move_to_angel(desk.children["C1"], angel.sim)

    results = run_worked_example(desk, alice, angel)

    assert [(r.step.title, r.rows, r.errors) for r in results if not r.ok] == []
    assert alice.sim.hit_count(user_id="MASTER", route="orders/book") >= len(results)
    assert angel.sim.hit_count(client_code="C1", route="placeOrder", status=200) >= 1
    assert_each_tag_once(desk)


def test_alice_session_expiry_moves_only_that_child_to_needs_login(sims):
    alice, angel = sims
    desk = build_desk()
    move_to_alice(desk.children["C1"], alice.sim)
    move_to_alice(desk.children["C2"], alice.sim)
    alice.sim.set_faults(user_id="C1", expire_token="now")  # EC087 from now on

    results = run_worked_example(desk, alice, angel)

    statuses = {
        a.broker_user_id: a.status for a in Account.objects.filter(broker_user_id__in=["C1", "C2", "C4"])
    }
    assert statuses["C1"] == AccountStatus.NEEDS_LOGIN
    assert statuses["C2"] != AccountStatus.NEEDS_LOGIN
    assert statuses["C4"] != AccountStatus.NEEDS_LOGIN
    assert not PaperOrder.objects.filter(account__user_id="C1").exists()
    assert alice.sim.hit_count(user_id="C2", route="placeorder", status=200) >= 1
    assert results
