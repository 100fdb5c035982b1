"""A mixed desk end to end (issue 15): the DESIGN §3.6 worked example with the master and the
children spread over the Kite simulator, the Angel simulator and the paper exchange, each broker
through its real SDK over HTTP. Every step must give every child the positions of the worked
example, whatever its broker, with a Kite master and with an Angel master."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from accounts.models import Account, Broker
from accounts.services import account_set_credentials
from brokers.angel.budget import forget_budgets
from brokers.paper.models import PaperOrder
from lab.angel_demo import move_to_angel
from lab.angel_sim.server import RunningSim as AngelRunning
from lab.angel_sim.server import start as start_angel
from lab.demo import Desk, run_script
from replication.models import MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from tests.engine_helpers import build_desk
from tests.kite_sim_helpers import kite_settings, running_sim, sim_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sims() -> Iterator[tuple[object, AngelRunning]]:
    forget_budgets()
    angel = start_angel()
    try:
        with running_sim() as kite:
            yield kite, angel
    finally:
        angel.stop()
        forget_budgets()


def move_to_kite(account: Account, kite) -> None:
    session = sim_session(kite, account.broker_user_id)
    Account.objects.filter(pk=account.pk).update(broker=Broker.KITE)
    account.refresh_from_db()
    account_set_credentials(
        account=account,
        actor="kite-sim-test",
        api_key=session.api_key,
        api_secret=f"secret{account.broker_user_id.lower()}000000",
        access_token=session.access_token,
    )


def run_worked_example(desk: Desk, kite, angel: AngelRunning) -> list:
    with kite_settings(kite.root, ANGEL_API_ROOT=angel.root):
        orch = Orchestrator(holder="mixed-e2e", workers=4)
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


def test_mixed_desk_kite_master_with_angel_kite_and_paper_children(sims):
    kite, angel = sims
    desk = build_desk()
    move_to_kite(desk.master, kite)
    move_to_kite(desk.children["C4"], kite)
    move_to_angel(desk.children["C1"], angel.sim)
    move_to_angel(desk.children["C2"], angel.sim)

    results = run_worked_example(desk, kite, angel)

    assert [(r.step.title, r.rows, r.errors) for r in results if not r.ok] == []
    for name in ("C1", "C2"):
        assert angel.sim.hit_count(client_code=name, route="placeOrder", status=200) >= 1, name
        assert angel.sim.hit_count(client_code=name, route="modifyOrder", status=200) == 1, name
        assert angel.sim.hit_count(client_code=name, route="cancelOrder", status=200) == 1, name
    assert_each_tag_once(desk)


def test_mixed_desk_angel_master_with_kite_children(sims):
    kite, angel = sims
    desk = build_desk()
    move_to_angel(desk.master, angel.sim)
    for name in ("C1", "C2", "C4"):
        move_to_kite(desk.children[name], kite)

    results = run_worked_example(desk, kite, angel)

    assert [(r.step.title, r.rows, r.errors) for r in results if not r.ok] == []
    assert angel.sim.hit_count(client_code="MASTER", route="getOrderBook") >= len(results)
    assert kite.sim.hit_count(user_id="C1", route="POST /orders/{variety}", status=200) >= 1
    assert_each_tag_once(desk)
