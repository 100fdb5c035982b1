"""PostgreSQL-only: several orchestrators on one database, and a leader paused past its lease.

Run by `make test-pg` (scripts/pg_test.sh starts a throwaway cluster on 127.0.0.1); skipped on
SQLite, whose IMMEDIATE transactions serialise writers differently. Every thread has its own
connection and closes it when done.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone

from brokers.paper.models import PaperOrder
from replication.engine.sender import dispatch as replicator_module
from replication.models import MappingStatus, OrchestratorLease, OrderMapping, TickRun
from replication.orchestrator import Orchestrator, TickResult
from replication.replicator import Replicator
from tests.engine_helpers import FUT, Desk, build_desk
from tests.faulty_broker import Faults, install

pytestmark = [pytest.mark.pg, pytest.mark.django_db(transaction=True)]

AFTER_BUY = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}
AFTER_SELL = {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}
NOT_FINAL = (MappingStatus.PLANNED, MappingStatus.SENDING, MappingStatus.UNKNOWN, MappingStatus.OPEN)
TTL = timedelta(seconds=1)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (make test-pg)")


@pytest.fixture
def faults():
    """The paper exchange, recording which thread placed each order."""
    f = Faults()
    f.before_place = lambda user, req: placed_by.append((threading.current_thread().name, req.tag))
    placed_by: list[tuple[str, str]] = []
    f.placed_by = placed_by  # type: ignore[attr-defined]
    restore = install(f)
    yield f
    restore()


def _per_tag() -> Counter[str]:
    return Counter(PaperOrder.objects.exclude(account__user_id="MASTER").values_list("tag", flat=True))


def _assert_once_each() -> None:
    per_tag = _per_tag()
    assert per_tag and max(per_tag.values()) == 1, per_tag
    wanted = set(OrderMapping.objects.filter(quantity__gt=0).values_list("tag", flat=True))
    assert set(per_tag) == wanted


def _wait_for(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _settled(desk: Desk, expected: dict[str, int]) -> Callable[[], bool]:
    def check() -> bool:
        return (
            not OrderMapping.objects.filter(status__in=NOT_FINAL).exists() and desk.positions(FUT) == expected
        )

    return check


def _in_thread(name: str, fn: Callable[[], Any], out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            out[name] = fn()
        except BaseException as exc:  # noqa: BLE001  (a thread's failure is collected and asserted by the test)
            out[f"{name}_error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


# --- (a) three orchestrators, one database ------------------------------------------------------


@override_settings(UNKNOWN_GRACE_SECONDS=3)  # as in production: longer than the lease
def test_three_orchestrators_on_one_database_one_acts_per_tick(faults):
    desk = build_desk()
    ttl = timedelta(seconds=1.5)
    Orchestrator(holder="setup", workers=0).run_tick()  # the master's baseline snapshot
    OrchestratorLease.objects.update(holder="", expires_at=None)
    stop = threading.Event()
    results: dict[str, list[TickResult]] = {f"O{i}": [] for i in range(3)}
    errors: list[BaseException] = []

    def ticker(name: str, seed: int) -> None:
        rng = random.Random(seed)
        orch = Orchestrator(holder=name, workers=0, lease_ttl=ttl)
        try:
            while not stop.is_set():
                result = orch.run_tick()
                results[name].append(result)
                roll = rng.random()
                if result.leader and roll < 0.25:
                    orch.close()  # a clean hand-over: the lease is free for whoever ticks next
                elif result.leader and roll < 0.35:
                    stop.wait(ttl.total_seconds() * 1.6)  # paused: the lease runs out under it
                else:
                    stop.wait(rng.uniform(0.01, 0.08))
        except BaseException as exc:  # noqa: BLE001  (collected and asserted below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ticker, args=(name, i), name=name) for i, name in enumerate(results)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        desk.place("BUY", FUT, 150)
        _wait_for(_settled(desk, AFTER_BUY), timeout=30, what="the BUY to be replicated")
        time.sleep(1.0)
        desk.place("SELL", FUT, 75)
        _wait_for(_settled(desk, AFTER_SELL), timeout=30, what="the SELL to be replicated")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    _assert_once_each()

    leaders = [r for rs in results.values() for r in rs if r.leader]
    waited = [r for rs in results.values() for r in rs if not r.leader]
    assert leaders and waited  # someone acted, the others waited
    ticks = list(
        TickRun.objects.exclude(holder="setup")
        .order_by("started_at", "id")
        .values("holder", "epoch", "outcome", "started_at", "finished_at", "error")
    )
    assert not [t for t in ticks if t["outcome"] == TickRun.Outcome.ERROR], ticks
    ok = [t for t in ticks if t["outcome"] == TickRun.Outcome.OK]
    assert len({t["holder"] for t in ok}) >= 2, "the lease never changed hands; nothing was tested"
    assert len({t["epoch"] for t in ok}) >= 3  # released or run out, and taken again, more than once
    # One holder per epoch: a takeover always bumps it.
    per_epoch = (
        TickRun.objects.exclude(holder="setup")
        .values("epoch")
        .annotate(holders=Count("holder", distinct=True))
        .filter(holders__gt=1)
    )
    assert not per_epoch.exists(), list(per_epoch)
    # No two successful ticks of different holders overlap in time.
    for earlier, later in itertools.pairwise(ok):
        if earlier["holder"] != later["holder"]:
            assert earlier["finished_at"] <= later["started_at"], (earlier, later)


# --- (b) a paused leader that lost its lease cannot write ---------------------------------------


def _take_over(b: Orchestrator, *, timeout: float = 15) -> TickResult:
    """B ticks until the lease it waits for runs out and it leads."""
    deadline = time.monotonic() + timeout
    while True:
        result = b.run_tick()
        if result.leader:
            return result
        if time.monotonic() > deadline:
            pytest.fail("B never took the lease over")
        time.sleep(0.1)


def _settle(orch: Orchestrator, desk: Desk, expected: dict[str, int], *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _settled(desk, expected)():
        if time.monotonic() > deadline:
            pytest.fail(f"not settled after {timeout} s: {desk.positions(FUT)} != {expected}")
        orch.run_tick()
        time.sleep(0.05)


def _a_outcome() -> dict[str, Any]:
    tick = TickRun.objects.filter(holder="A").order_by("-id").values("outcome", "error").first()
    assert tick is not None
    return tick


def test_paused_leader_before_its_claim_cannot_write_and_sends_nothing(faults, monkeypatch):
    desk = build_desk()
    a = Orchestrator(holder="A", workers=0, lease_ttl=TTL)
    b = Orchestrator(holder="B", workers=0, lease_ttl=TTL)
    epoch_a = a.run_tick().epoch  # baseline; A leads
    assert epoch_a
    arrived, resume = threading.Event(), threading.Event()
    send_wave = Replicator._send_wave

    def paused_send_wave(self: Replicator, mappings: list[OrderMapping]) -> Any:
        if self.lease.holder == "A":
            arrived.set()
            assert resume.wait(30)
        return send_wave(self, mappings)

    monkeypatch.setattr(Replicator, "_send_wave", paused_send_wave)
    desk.place("BUY", FUT, 150)
    out: dict[str, Any] = {}
    thread = _in_thread("A", a.run_tick, out)
    assert arrived.wait(30)
    # A decided and committed its intents, then stalled before claiming them.
    assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4
    taken = _take_over(b)  # A's lease runs out; B takes over with a new epoch and acts
    assert taken.epoch == epoch_a + 1
    assert taken.dispatch.sent == 4
    resume.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and "A_error" not in out
    assert any("lease lost" in e for e in out["A"].errors)
    assert _a_outcome()["outcome"] == TickRun.Outcome.NOT_LEADER
    assert [tag for who, tag in faults.placed_by if who == "A"] == []  # A sent nothing
    _settle(b, desk, AFTER_BUY)
    _assert_once_each()


@override_settings(UNKNOWN_GRACE_SECONDS=0)  # B looks claimed intents up at once: the worst case
def test_paused_leader_after_its_claim_sends_nothing_once_its_lease_ran_out(faults, monkeypatch):
    """A claims its intents (SENDING, committed), stalls past its lease, then wakes to send."""
    desk = build_desk()
    a = Orchestrator(holder="A", workers=0, lease_ttl=TTL)
    b = Orchestrator(holder="B", workers=0, lease_ttl=TTL)
    assert a.run_tick().leader
    arrived, resume = threading.Event(), threading.Event()
    send_child = Replicator._send_child

    def paused_send_child(self: Replicator, mappings: list[OrderMapping], **kwargs: Any) -> Any:
        if self.lease.holder == "A" and not arrived.is_set():
            arrived.set()
            assert resume.wait(30)
        return send_child(self, mappings, **kwargs)

    monkeypatch.setattr(Replicator, "_send_child", paused_send_child)
    desk.place("BUY", FUT, 150)
    out: dict[str, Any] = {}
    thread = _in_thread("A", a.run_tick, out)
    assert arrived.wait(30)
    assert OrderMapping.objects.filter(status=MappingStatus.SENDING).count() == 4
    _take_over(b)  # B finds the claimed intents absent at the broker and sends them itself
    assert sum(_per_tag().values()) == 4
    resume.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and "A_error" not in out
    assert [tag for who, tag in faults.placed_by if who == "A"] == []  # A woke up and sent nothing
    assert _a_outcome()["outcome"] == TickRun.Outcome.NOT_LEADER
    _settle(b, desk, AFTER_BUY)
    _assert_once_each()


def test_takeover_waits_for_the_leaders_open_write_transaction(faults, monkeypatch):
    """A stalls inside its claim transaction, holding the lease row FOR UPDATE: B's takeover
    blocks until that transaction ends, even though A's lease has run out meanwhile."""
    desk = build_desk()
    a = Orchestrator(holder="A", workers=0, lease_ttl=TTL)
    b = Orchestrator(holder="B", workers=0, lease_ttl=TTL)
    assert a.run_tick().leader
    arrived, resume = threading.Event(), threading.Event()
    lease_check = replicator_module.lease_check
    stalled = {"done": False}

    def stalling_lease_check(lease: Any) -> None:
        lease_check(lease)
        if lease.holder == "A" and not stalled["done"]:
            stalled["done"] = True  # the first guarded write of this tick: the claim
            arrived.set()
            assert resume.wait(30)

    monkeypatch.setattr(replicator_module, "lease_check", stalling_lease_check)
    desk.place("BUY", FUT, 150)
    out: dict[str, Any] = {}
    thread_a = _in_thread("A", a.run_tick, out)
    assert arrived.wait(30)
    thread_b = _in_thread("B", lambda: _take_over(b, timeout=30), out)
    time.sleep(TTL.total_seconds() * 2.5)  # A's lease has run out, but its transaction is open
    assert thread_b.is_alive() and "B" not in out, "B took the lease while A's write transaction was open"
    resumed_at: datetime = timezone.now()
    resume.set()
    thread_a.join(timeout=30)
    thread_b.join(timeout=30)
    assert "A_error" not in out and "B_error" not in out, out
    first_b = TickRun.objects.filter(holder="B").order_by("id").values_list("started_at", flat=True).first()
    assert first_b is not None and first_b >= resumed_at
    # A's claim committed (it was leader when it checked), but it sent nothing after its lease ran out.
    assert [tag for who, tag in faults.placed_by if who == "A"] == []
    _settle(b, desk, AFTER_BUY)
    _assert_once_each()
