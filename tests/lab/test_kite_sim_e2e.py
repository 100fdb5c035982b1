"""End to end on the Kite path: orchestrator ticks -> KiteBroker -> the real kiteconnect SDK -> HTTP ->
kite_sim -> the paper exchange, for the master and every child (DESIGN §3.6 desk)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from accounts.models import AccountStatus
from brokers.paper.models import PaperOrder
from lab.demo import run_script
from replication.models import FINAL_MAPPING_STATUSES, MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from tests.engine_helpers import FUT, build_desk
from tests.kite_sim_helpers import KiteDesk, kite_settings, move_desk_to_kite, running_sim, tag_counts

pytestmark = pytest.mark.django_db(transaction=True)

ENTRY = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}  # DESIGN §3.6 step 1
PLACE = "POST /orders/{variety}"


@pytest.fixture
def kdesk() -> Iterator[KiteDesk]:
    with running_sim() as running:
        yield move_desk_to_kite(build_desk(), running)


@contextmanager
def engine(kdesk: KiteDesk, **settings: object) -> Iterator[Orchestrator]:
    """An orchestrator (4 workers) with the engine's settings pointed at the simulator."""
    with kite_settings(kdesk.root, **settings):
        orch = Orchestrator(holder="kite-e2e", workers=4)
        try:
            yield orch
        finally:
            orch.close()


@pytest.fixture
def orch(kdesk: KiteDesk) -> Iterator[Orchestrator]:
    with engine(kdesk) as o:
        yield o


def child_mappings(kdesk: KiteDesk, name: str) -> list[OrderMapping]:
    return list(OrderMapping.objects.filter(child=kdesk.desk.children[name], quantity__gt=0).order_by("id"))


def assert_each_tag_once(kdesk: KiteDesk) -> None:
    """Every placed intent exists exactly once at the paper exchange, and nothing else does."""
    for name in kdesk.desk.children:
        tags = {m.tag for m in child_mappings(kdesk, name) if m.status != MappingStatus.FAILED}
        assert tag_counts(name) == dict.fromkeys(tags, 1), name


def test_kite_e2e_worked_example_replicates_every_step(kdesk, orch):
    results = run_script(kdesk.desk, orch)

    failed = [(r.step.title, r.rows, r.errors) for r in results if not r.ok]
    assert failed == []
    assert len(results) == 7
    sim = kdesk.running.sim
    # It really went through the simulator, for the master and every child that traded.
    assert sim.hit_count(user_id="MASTER", route="GET /orders") >= len(results)
    for name in ("C1", "C2", "C4", "C5"):
        assert sim.hit_count(user_id=name, route=PLACE, status=200) == len(child_mappings(kdesk, name))
        assert sim.hit_count(user_id=name, route="PUT /orders/{variety}/{order_id}", status=200) == 1
        assert sim.hit_count(user_id=name, route="DELETE /orders/{variety}/{order_id}", status=200) == 1
    assert sim.hit_count(user_id="C3", route=PLACE) == 0
    # The child LIMIT orders followed the master's modify (19,100) and cancel.
    limits = PaperOrder.objects.filter(order_type="LIMIT", account__user_id__in=list(kdesk.desk.children))
    assert {(o.price, o.status) for o in limits} == {(19100, "CANCELLED")}
    assert_each_tag_once(kdesk)


def test_kite_e2e_accept_then_timeout_places_exactly_one_order(kdesk):
    # Reads time out after 1 s; C2's next order is placed, then answered only after 2 s.
    with engine(kdesk, KITE_TIMEOUT_S=1, UNKNOWN_GRACE_SECONDS=30) as orch:
        orch.run_tick()
        kdesk.running.sim.set_faults(user_id="C2", timeout_after_place={"sleep_s": 2.0, "count": 1})
        kdesk.desk.place("BUY", FUT, 150)

        first = orch.run_tick()
        (c2,) = child_mappings(kdesk, "C2")
        assert first.dispatch.unknown == 1
        assert c2.status == MappingStatus.UNKNOWN
        assert tag_counts("C2") == {c2.tag: 1}  # placed although the answer never came

        orch.run_tick()
        orch.run_tick()

    c2.refresh_from_db()
    order = PaperOrder.objects.get(account__user_id="C2")
    assert c2.status == MappingStatus.FILLED
    assert (order.tag, order.order_id, order.status) == (c2.tag, c2.broker_order_id, "COMPLETE")
    assert kdesk.desk.positions(FUT) == ENTRY
    assert_each_tag_once(kdesk)


def test_kite_e2e_rate_limit_storm_loses_and_duplicates_nothing(kdesk, orch):
    sim = kdesk.running.sim
    orch.run_tick()
    sim.set_faults(user_id="C1", rate_limit={"count": 2})
    sim.set_faults(user_id="C2", rate_limit={"count": 3})
    sim.set_faults(user_id="C4", rate_limit={"count": 1})
    sim.set_faults(user_id="C5", rate_limit={"count": 6, "probability": 0.5}, seed=7)
    kdesk.desk.place("BUY", FUT, 150)

    ticks = 0
    while ticks < 12:
        orch.run_tick()
        ticks += 1
        open_ = OrderMapping.objects.filter(quantity__gt=0).exclude(status__in=FINAL_MAPPING_STATUSES)
        if OrderMapping.objects.filter(quantity__gt=0).exists() and not open_.exists():
            break

    assert sim.hit_count(route=PLACE, status=429) >= 6
    for name in ("C1", "C2", "C4", "C5"):
        assert [m.status for m in child_mappings(kdesk, name)] == [MappingStatus.FILLED], name
        assert sim.hit_count(user_id=name, route=PLACE, status=200) == 1, name
    assert kdesk.desk.positions(FUT) == ENTRY
    assert_each_tag_once(kdesk)


def test_kite_e2e_token_expiring_mid_tick_needs_login_others_fill(kdesk, orch):
    orch.run_tick()
    # C5's session dies between the margin read (which still works) and its order write.
    kdesk.running.sim.set_faults(user_id="C5", expire_token="on_order_write")
    kdesk.desk.place("BUY", FUT, 150)

    result = orch.run_tick()

    c5 = kdesk.desk.children["C5"]
    c5.refresh_from_db()
    assert c5.status == AccountStatus.NEEDS_LOGIN
    assert [m.status for m in child_mappings(kdesk, "C5")] == [MappingStatus.FAILED]
    assert not PaperOrder.objects.filter(account__user_id="C5").exists()
    # The others were accepted and filled at the exchange in that same tick.
    assert result.dispatch.accepted == 3
    assert kdesk.desk.positions(FUT) == {**ENTRY, "C5": 0}
    for name in ("C1", "C2", "C4"):
        (mapping,) = child_mappings(kdesk, name)
        assert mapping.status in (MappingStatus.OPEN, MappingStatus.FILLED), name
        order = PaperOrder.objects.get(account__user_id=name)
        assert (order.order_id, order.status) == (mapping.broker_order_id, "COMPLETE")
        kdesk.desk.children[name].refresh_from_db()
        assert kdesk.desk.children[name].status == AccountStatus.ACTIVE

    orch.run_tick()  # the next tick records the fills, leaves C5 alone and sends nothing twice
    for name in ("C1", "C2", "C4"):
        assert [m.status for m in child_mappings(kdesk, name)] == [MappingStatus.FILLED], name
    assert kdesk.running.sim.hit_count(user_id="C5", route=PLACE) == 1
    assert_each_tag_once(kdesk)


def test_kite_e2e_5xx_after_accept_with_a_late_book_waits_and_places_once(kdesk):
    with engine(kdesk, UNKNOWN_GRACE_SECONDS=30) as orch:
        orch.run_tick()
        # C1's order is placed, answered 503, and stays out of C1's order book for 1.5 s.
        kdesk.running.sim.set_faults(user_id="C1", error_after_place={"status": 503}, late_book_s=1.5)
        kdesk.desk.place("BUY", FUT, 150)

        orch.run_tick()
        orch.run_tick()  # not in the book yet, but within the grace period: no second order
        (c1,) = child_mappings(kdesk, "C1")
        assert c1.status == MappingStatus.UNKNOWN
        time.sleep(1.6)
        orch.run_tick()

    c1.refresh_from_db()
    assert c1.status == MappingStatus.FILLED
    assert kdesk.running.sim.hit_count(user_id="C1", route=PLACE) == 1
    assert kdesk.desk.positions(FUT) == ENTRY
    assert_each_tag_once(kdesk)


def _big_child_entry(kdesk: KiteDesk, orch: Orchestrator) -> None:
    """C2 with ₹1 crore: a master entry of 4 lots makes its share 40 lots = 3,000, above NIFTY's
    freeze quantity of 1,800 (the paper exchange behind the simulator refuses such an order)."""
    from decimal import Decimal

    from brokers.paper.services import paper_account_set_cash

    paper_account_set_cash(user_id="C2", cash=Decimal("10000000"))
    orch.run_tick()
    kdesk.desk.place("BUY", FUT, 300)
    orch.run_tick()


def test_kite_e2e_freeze_quantities_slice_orders_the_instrument_list_cannot(kdesk):
    with engine(kdesk, FREEZE_QUANTITIES={"NIFTY": 1800}) as orch:
        _big_child_entry(kdesk, orch)
    slices = child_mappings(kdesk, "C2")
    assert [(m.slice_no, m.quantity) for m in slices] == [(0, 1800), (1, 1200)]
    assert (
        sum(o.quantity for o in PaperOrder.objects.filter(account__user_id="C2", status="COMPLETE")) == 3000
    )
    assert_each_tag_once(kdesk)


def test_kite_e2e_without_freeze_quantities_the_exchange_refuses_the_big_order(kdesk):
    with engine(kdesk) as orch:
        _big_child_entry(kdesk, orch)
    (only,) = child_mappings(kdesk, "C2")
    assert only.quantity == 3000 and only.status == MappingStatus.REJECTED
    assert "freeze quantity" in only.reason
