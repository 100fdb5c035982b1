"""A mixed desk end to end with Dhan (issue 16): the DESIGN §3.6 worked example with the master and
the children spread over the Kite simulator, the Angel simulator, the Dhan simulator and the paper
exchange, each broker through its real SDK over HTTP; Dhan as a child, then Dhan as the master."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from django.test import override_settings

from brokers.angel.budget import forget_budgets as forget_angel_budgets
from brokers.paper.models import PaperOrder
from lab.angel_demo import move_to_angel
from lab.angel_sim.server import start as start_angel
from lab.demo import Desk, run_script
from lab.dhan_demo import move_to_dhan
from replication.models import MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from tests.dhan_helpers import running_dhan_sim
from tests.engine_helpers import build_desk
from tests.kite_sim_helpers import kite_settings, running_sim
from tests.lab.test_angel_sim_mixed import move_to_kite

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sims() -> Iterator[tuple[object, object, object]]:
    forget_angel_budgets()
    angel = start_angel()
    try:
        with running_sim() as kite, running_dhan_sim() as dhan:
            yield kite, angel, dhan
    finally:
        angel.stop()
        forget_angel_budgets()


def run_worked_example(desk: Desk, kite, angel, dhan) -> list:
    with kite_settings(kite.root, ANGEL_API_ROOT=angel.root), override_settings(DHAN_API_ROOT=dhan.root):
        orch = Orchestrator(holder="dhan-mixed", workers=4)
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


def test_mixed_desk_kite_master_with_dhan_angel_kite_and_paper_children(sims):
    kite, angel, dhan = sims
    desk = build_desk()
    move_to_kite(desk.master, kite)
    move_to_kite(desk.children["C4"], kite)
    move_to_angel(desk.children["C1"], angel.sim)
    move_to_dhan(desk.children["C2"], dhan.sim)
    move_to_dhan(desk.children["C5"], dhan.sim)

    results = run_worked_example(desk, kite, angel, dhan)

    assert [(r.step.title, r.rows, r.errors) for r in results if not r.ok] == []
    for name in ("C2", "C5"):
        assert dhan.sim.hit_count(client_id=name, route="POST /v2/orders", status=200) >= 1, name
    assert dhan.sim.hit_count(client_id="C2", route="PUT /v2/orders/{id}", status=200) == 1
    assert dhan.sim.hit_count(client_id="C2", route="DELETE /v2/orders/{id}", status=202) == 1
    assert_each_tag_once(desk)


def test_mixed_desk_dhan_master_with_kite_angel_and_paper_children(sims):
    kite, angel, dhan = sims
    desk = build_desk()
    move_to_dhan(desk.master, dhan.sim)
    move_to_kite(desk.children["C1"], kite)
    move_to_angel(desk.children["C2"], angel.sim)

    results = run_worked_example(desk, kite, angel, dhan)

    assert [(r.step.title, r.rows, r.errors) for r in results if not r.ok] == []
    assert dhan.sim.hit_count(client_id="MASTER", route="GET /v2/orders") >= len(results)
    assert dhan.sim.hit_count(client_id="MASTER", route="GET /v2/fundlimit") >= 1
    assert angel.sim.hit_count(client_code="C2", route="placeOrder", status=200) >= 1
    assert_each_tag_once(desk)
