"""Crash safety (DESIGN §4.2): no duplicate and no lost order, whatever dies when."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from brokers.paper.models import PaperOrder
from replication.engine import tick as engine_tick
from replication.lease import LeaseLost, lease_acquire
from replication.models import Allocation, MappingStatus, OrchestratorLease, OrderMapping
from replication.orchestrator import Orchestrator
from replication.replicator import Replicator
from tests.engine_helpers import FUT, build_desk

EXPECTED = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}


def _child_orders_per_tag():
    return Counter(PaperOrder.objects.exclude(account__user_id="MASTER").values_list("tag", flat=True))


def _assert_once_each():
    per_tag = _child_orders_per_tag()
    assert per_tag and max(per_tag.values()) == 1, per_tag
    wanted = set(OrderMapping.objects.filter(quantity__gt=0).values_list("tag", flat=True))
    assert set(per_tag) == wanted  # every wanted order exists, nothing else does


def test_crash_after_intents_committed_before_any_send(desk, monkeypatch):
    first = Orchestrator(holder="A", workers=0)
    first.run_tick()
    desk.place("BUY", FUT, 150)

    def crash(self, **kwargs):
        raise SystemExit("killed after the intent commit")

    monkeypatch.setattr(Replicator, "dispatch", crash)
    with pytest.raises(SystemExit):
        first.run_tick()
    assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4
    assert not _child_orders_per_tag()
    monkeypatch.undo()
    OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # A is dead
    restarted = Orchestrator(holder="B", workers=0)
    restarted.run_tick()
    assert desk.positions(FUT) == EXPECTED
    _assert_once_each()


def test_crash_after_master_orders_recorded_before_sizing(desk, monkeypatch):
    orch = Orchestrator(holder="A", workers=0)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    size_allocations = engine_tick.size_allocations

    def killed_at_step_7(ctx, *, first_wave=False):  # type: ignore[no-untyped-def]
        # Step 1b (what an earlier tick left unsized) runs; the process dies at step 7, after the
        # master orders and allocations of this tick were recorded.
        if first_wave:
            raise SystemExit("killed")
        return size_allocations(ctx)

    monkeypatch.setattr(engine_tick, "size_allocations", killed_at_step_7)
    with pytest.raises(SystemExit):
        orch.run_tick()
    assert Allocation.objects.filter(sized=False).count() == 1
    monkeypatch.undo()
    orch.run_tick()
    assert desk.positions(FUT) == EXPECTED
    _assert_once_each()


def test_crash_while_sending_order_exists_at_broker(desk, monkeypatch):
    """Claimed (SENDING) and placed, but the process died before writing the outcome."""
    orch = Orchestrator(holder="A", workers=0)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    monkeypatch.setattr(
        Replicator, "_write_outcomes", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed"))
    )
    with pytest.raises(SystemExit):
        orch.run_tick()
    assert OrderMapping.objects.filter(status=MappingStatus.SENDING).count() == 4
    monkeypatch.undo()
    orch.run_tick()
    assert set(OrderMapping.objects.filter(quantity__gt=0).values_list("status", flat=True)) == {
        MappingStatus.FILLED
    }
    assert desk.positions(FUT) == EXPECTED
    _assert_once_each()


def test_outcome_unknown_while_order_exists_is_found_by_tag(desk, faults):
    orch = Orchestrator(holder="A", workers=0)
    orch.run_tick()
    faults.place_then_unknown.add("C2")
    desk.place("BUY", FUT, 150)
    result = orch.run_tick()
    assert result.dispatch.unknown == 1
    c2 = OrderMapping.objects.get(child=desk.children["C2"])
    # the same tick's follow-up (or the next tick) finds it by tag; it is never sent again
    orch.run_tick()
    c2.refresh_from_db()
    assert c2.status == MappingStatus.FILLED and c2.broker_order_id
    assert [u for u, _ in faults.places].count("C2") == 1
    _assert_once_each()


def test_outcome_unknown_and_absent_is_sent_again_once(desk, faults):
    orch = Orchestrator(holder="A", workers=0)
    orch.run_tick()
    faults.unknown_not_placed.add("C2")
    desk.place("BUY", FUT, 150)
    orch.run_tick()  # C2's send: unknown
    orch.run_tick()  # looked up by tag: absent, so sent again
    orch.run_tick()  # the fill is recorded
    c2 = OrderMapping.objects.get(child=desk.children["C2"])
    assert c2.status == MappingStatus.FILLED and c2.attempts == 2
    assert desk.positions(FUT) == EXPECTED
    _assert_once_each()


def test_rate_limited_send_is_deferred_then_sent(desk, faults):
    orch = Orchestrator(holder="A", workers=0)
    orch.run_tick()
    faults.rate_limited_once.add("C2")
    desk.place("BUY", FUT, 150)
    first = orch.run_tick()
    assert first.dispatch.deferred == 1
    orch.run_tick()
    assert desk.positions(FUT) == EXPECTED
    _assert_once_each()


def test_same_tick_run_twice_places_nothing_twice(desk):
    orch = Orchestrator(holder="A", workers=0)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    mappings = OrderMapping.objects.count()
    for _ in range(3):
        orch.run_tick()
    assert OrderMapping.objects.count() == mappings
    assert desk.positions(FUT) == EXPECTED
    _assert_once_each()


def test_second_orchestrator_waits_and_never_acts(desk):
    a = Orchestrator(holder="A", workers=0)
    b = Orchestrator(holder="B", workers=0)
    assert a.run_tick().leader
    desk.place("BUY", FUT, 150)
    assert not b.run_tick().leader
    assert not OrderMapping.objects.exists()
    assert a.run_tick().leader
    assert desk.positions(FUT) == EXPECTED


def test_stale_leader_writes_are_refused(desk, monkeypatch):
    from replication.replicator import DispatchReport

    a = Orchestrator(holder="A", workers=0)
    a.run_tick()
    desk.place("BUY", FUT, 150)
    monkeypatch.setattr(Replicator, "dispatch", lambda self, **k: DispatchReport())
    a.run_tick()  # A decided and committed intents, then stalled before sending
    monkeypatch.undo()
    lease_a = lease_acquire(holder="A")
    assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4
    OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    lease_b = lease_acquire(holder="B")
    assert lease_b is not None and lease_b.epoch == lease_a.epoch + 1
    with pytest.raises(LeaseLost):
        Replicator(lease=lease_a, workers=0).dispatch()  # A wakes up: its claim is refused
    assert not _child_orders_per_tag()
    assert not a.run_tick().leader
    Orchestrator(holder="B", workers=0).run_tick()
    assert desk.positions(FUT) == EXPECTED
    _assert_once_each()


@pytest.mark.django_db(transaction=True)
def test_two_orchestrators_in_parallel_threads_place_each_order_once(faults):
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith("file:memorydb"):
        pytest.skip("needs a file or server database shared across threads")
    desk = build_desk()
    orchestrators = [Orchestrator(holder=f"O{i}", workers=4) for i in range(2)]
    orchestrators[0].run_tick()
    desk.place("BUY", FUT, 150)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(o):
        try:
            barrier.wait()
            for _ in range(3):
                o.run_tick()
        except BaseException as exc:  # noqa: BLE001  (any failure in the thread is collected and asserted below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(o,)) for o in orchestrators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for o in orchestrators:
        o.close()
    assert not errors
    assert desk.positions(FUT) == EXPECTED
    _assert_once_each()
