"""Named failpoints (issue 7): the switch itself, and an in-process crash at every point.

Each crash test arms one point with the `raise` action, lets the paper desk of DESIGN §3.6 run
into it, then starts a new orchestrator (new holder, the dead one's lease expired) and ticks until
every mapping is final. Whatever died where: at most one broker order per tag, every wanted order
exists, and the children's positions are the worked example's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from brokers.paper.models import PaperOrder
from replication import failpoints
from replication.failpoints import FailpointTriggered, failpoint
from replication.fanout import FanOut
from replication.models import MappingStatus, OrchestratorLease, OrderMapping, ReplicationEvent
from replication.orchestrator import Orchestrator
from replication.ratelimit import RateLimiter
from tests.engine_helpers import FUT, build_desk

AFTER_BUY = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}
AFTER_SELL = {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}
NOT_FINAL = (MappingStatus.PLANNED, MappingStatus.SENDING, MappingStatus.UNKNOWN, MappingStatus.OPEN)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _disarm():
    failpoints.reset()
    yield
    failpoints.reset()


# --- the switch -------------------------------------------------------------------------------


def test_failpoints_parse_reads_actions_and_hit_numbers():
    assert failpoints.parse(" after_intent_commit=kill , after_broker_call=raise:3,") == {
        "after_intent_commit": (failpoints.Action.KILL, None),
        "after_broker_call": (failpoints.Action.RAISE, 3),
    }
    assert failpoints.parse("") == {}


@pytest.mark.parametrize(
    "spec",
    ["after_broker_cal=raise", "after_broker_call", "after_broker_call=explode", "before_ack_commit=raise:0"],
)
def test_failpoints_parse_refuses_what_would_silently_never_fire(spec):
    with pytest.raises(ValueError, match="PMS_FAILPOINTS"):
        failpoints.parse(spec)


def test_failpoint_unarmed_does_nothing_and_counts_nothing():
    failpoints.configure({})
    for name in failpoints.NAMES:
        failpoint(name)
    assert all(failpoints.hits(name) == 0 for name in failpoints.NAMES)


def test_failpoint_raise_fires_on_every_hit_without_n():
    failpoints.configure({"before_ack_commit": "raise"})
    for hit in (1, 2):
        with pytest.raises(FailpointTriggered) as info:
            failpoint("before_ack_commit")
        assert (info.value.name, info.value.hit) == ("before_ack_commit", hit)
    failpoint("after_broker_call")  # not armed


def test_failpoint_with_n_fires_on_that_hit_only():
    failpoints.configure({"after_broker_call": "raise:3"})
    failpoint("after_broker_call")
    failpoint("after_broker_call")
    with pytest.raises(FailpointTriggered):
        failpoint("after_broker_call")
    failpoint("after_broker_call")
    assert failpoints.hits("after_broker_call") == 4


def test_failpoint_triggered_is_not_an_exception_so_catch_alls_let_it_through():
    # run_tick and the replicator catch `Exception`; a crash must pass through them (see below).
    assert issubclass(FailpointTriggered, BaseException)
    assert not issubclass(FailpointTriggered, Exception)


def test_failpoints_read_environment_once_until_reset(monkeypatch):
    monkeypatch.setenv(failpoints.ENV_VAR, "after_intent_commit=raise:2")
    failpoints.reset()
    failpoint("after_intent_commit")
    monkeypatch.delenv(failpoints.ENV_VAR)
    with pytest.raises(FailpointTriggered):  # still the environment read at the first hit
        failpoint("after_intent_commit")
    failpoints.reset()
    failpoint("after_intent_commit")  # environment read again: nothing armed


def test_failpoints_active_disarms_after_the_block():
    with failpoints.active({"after_intent_commit": "raise"}), pytest.raises(FailpointTriggered):
        failpoint("after_intent_commit")
    failpoint("after_intent_commit")


def test_failpoint_kill_sends_sigkill_to_the_process():
    code = (
        "from replication.failpoints import failpoint\n"
        "failpoint('after_broker_call')\n"
        "print('first hit passed', flush=True)\n"
        "failpoint('after_broker_call')\n"
        "print('survived')\n"
    )
    env = {**os.environ, failpoints.ENV_VAR: "after_broker_call=kill:2"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL
    assert done.stdout == "first hit passed\n"


# --- crash at each point, restart, converge ------------------------------------------------------


def _close_pool_connections(fanout: FanOut) -> None:
    """Wait for the pool's threads, closing the database connection each of them opened."""
    pool = fanout._pool
    if pool is not None:
        size = pool._max_workers
        barrier = threading.Barrier(size)

        def close_mine(_: int) -> None:
            barrier.wait(timeout=30)  # one task per thread: all of them are busy here at once
            connection.close()

        list(pool.map(close_mine, range(size)))
    fanout.close()


def _child_orders_per_tag() -> Counter[str]:
    return Counter(PaperOrder.objects.exclude(account__user_id="MASTER").values_list("tag", flat=True))


def _restart(holder: str) -> Orchestrator:
    """The crashed process is gone: its lease runs out and a new process takes over."""
    OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    return Orchestrator(holder=holder, workers=0)


def _crash(orch: Orchestrator, *, max_ticks: int = 3) -> FailpointTriggered:
    for _ in range(max_ticks):
        try:
            orch.run_tick()
        except FailpointTriggered as exc:
            return exc
    pytest.fail(f"no armed failpoint was reached in {max_ticks} ticks")


def _settle(orch: Orchestrator, *, max_ticks: int = 6) -> None:
    for _ in range(max_ticks):
        assert orch.run_tick().leader
        if not OrderMapping.objects.filter(status__in=NOT_FINAL).exists():
            return
    left = list(OrderMapping.objects.filter(status__in=NOT_FINAL).values_list("tag", "status"))
    pytest.fail(f"not settled after {max_ticks} ticks: {left}")


def _assert_converged(desk, expected: dict[str, int]) -> None:
    per_tag = _child_orders_per_tag()
    assert per_tag and max(per_tag.values()) == 1, per_tag  # no tag placed twice
    wanted = OrderMapping.objects.filter(quantity__gt=0).exclude(status=MappingStatus.SKIPPED)
    assert {m.tag: per_tag[m.tag] for m in wanted} == {m.tag: 1 for m in wanted}  # none lost
    assert set(per_tag) == {m.tag for m in wanted}  # no order without an intent
    paper = dict(PaperOrder.objects.filter(tag__in=list(per_tag)).values_list("tag", "filled_quantity"))
    assert {m.tag: m.filled_quantity for m in wanted} == {m.tag: paper[m.tag] for m in wanted}
    assert desk.positions(FUT) == expected


@pytest.mark.parametrize(
    ("point", "action"),
    [
        ("after_intent_commit", "raise"),
        ("after_broker_call", "raise:1"),
        ("after_broker_call", "raise:2"),
        ("after_broker_call", "raise:4"),
        ("before_ack_commit", "raise"),
        ("mid_reconciliation", "raise"),
    ],
)
def test_crash_at_failpoint_on_entry_restart_converges(desk, point, action):
    first = Orchestrator(holder="A", workers=0)
    first.run_tick()  # baseline master snapshot
    failpoints.configure({point: action})
    desk.place("BUY", FUT, 150)
    crash = _crash(first)
    assert crash.name == point
    if point == "after_intent_commit":
        assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4
        assert not _child_orders_per_tag()  # committed intents, nothing sent
    elif point == "after_broker_call":
        n = int(action.split(":")[1])
        assert sum(_child_orders_per_tag().values()) == n  # n orders out, no outcome written
        assert OrderMapping.objects.filter(status=MappingStatus.SENDING).count() == 4
    elif point == "before_ack_commit":
        assert sum(_child_orders_per_tag().values()) == 4
        assert OrderMapping.objects.filter(status=MappingStatus.SENDING).count() == 4
    failpoints.reset()
    _settle(_restart("B"))
    _assert_converged(desk, AFTER_BUY)


@pytest.mark.parametrize(
    ("point", "action"),
    [
        ("after_intent_commit", "raise"),
        ("after_broker_call", "raise:1"),
        ("after_broker_call", "raise:3"),
        ("before_ack_commit", "raise"),
        ("mid_reconciliation", "raise"),
    ],
)
def test_crash_at_failpoint_on_exit_restart_converges(desk, point, action):
    first = Orchestrator(holder="A", workers=0)
    first.run_tick()
    desk.place("BUY", FUT, 150)
    _settle(first)
    failpoints.configure({point: action})
    desk.place("SELL", FUT, 75)
    assert _crash(first).name == point
    failpoints.reset()
    _settle(_restart("B"))
    _assert_converged(desk, AFTER_SELL)


def test_crash_mid_reconciliation_during_recovery_by_tag_then_restart_again(desk):
    first = Orchestrator(holder="A", workers=0)
    first.run_tick()
    failpoints.configure({"after_broker_call": "raise:2"})
    desk.place("BUY", FUT, 150)
    _crash(first)  # two orders out, four mappings SENDING
    failpoints.configure({"mid_reconciliation": "raise"})
    second = _restart("B")
    with pytest.raises(FailpointTriggered):
        second.run_tick()  # its first act: look the SENDING tags up; it dies while doing so
    assert OrderMapping.objects.filter(status=MappingStatus.SENDING).count() == 4  # nothing written
    failpoints.reset()
    _settle(_restart("C"))
    _assert_converged(desk, AFTER_BUY)
    kinds = Counter(
        ReplicationEvent.objects.filter(kind__in=("found_by_tag", "absent_resend")).values_list(
            "kind", flat=True
        )
    )
    assert kinds == {"found_by_tag": 2, "absent_resend": 2}


def test_crash_at_every_point_in_turn_loses_and_duplicates_nothing(desk, faults):
    """One restart per point: intent commit, broker call, ack commit, then a look-up by tag."""
    orch = Orchestrator(holder="A", workers=0)
    orch.run_tick()
    faults.place_then_unknown.add("C2")  # C2's order exists, but its send answers "unknown"
    desk.place("BUY", FUT, 150)
    for n, (point, action) in enumerate(
        [
            ("after_intent_commit", "raise"),
            ("after_broker_call", "raise:1"),
            ("before_ack_commit", "raise"),
            ("mid_reconciliation", "raise"),
        ]
    ):
        failpoints.configure({point: action})
        assert _crash(orch).name == point
        failpoints.reset()
        orch = _restart(f"R{n}")
    _settle(orch)
    _assert_converged(desk, AFTER_BUY)
    assert [user for user, _ in faults.places].count("C2") == 1


@pytest.mark.django_db(transaction=True)
def test_crash_after_broker_call_in_the_worker_pool_reaches_the_tick(faults):
    """With concurrent fan-out the crash is raised in a pool thread and still ends the tick."""
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith("file:memorydb"):
        pytest.skip("needs a file or server database shared across threads")
    desk = build_desk()
    first = Orchestrator(holder="A", workers=3)
    try:
        first.run_tick()
        failpoints.configure({"after_broker_call": "raise:2"})
        desk.place("BUY", FUT, 150)
        assert _crash(first).name == "after_broker_call"
    finally:
        # A killed process has no threads left: let the pool's other sends finish before restarting.
        if first._replicator is not None:
            _close_pool_connections(first._replicator.fanout)
    failpoints.reset()
    _settle(_restart("B"))
    _assert_converged(desk, AFTER_BUY)


# --- a stall instead of a crash ------------------------------------------------------------------


def test_leader_stalled_past_its_lease_between_claim_and_send_sends_nothing(desk, faults, monkeypatch):
    """The claim committed, then the process stalled (here: in the rate limiter) past its lease.
    Another leader may already be looking those tags up; this one must not send them as well."""
    from django.utils import timezone

    from replication.models import OrchestratorLease

    orch = Orchestrator(holder="A", workers=0, lease_ttl=timedelta(seconds=1))
    orch.run_tick()
    acquire = RateLimiter.acquire
    stalled: list[int] = []

    def slow_acquire(self: RateLimiter) -> float:
        if not stalled:
            stalled.append(1)  # stalls until just past the lease the tick renewed, however long it took
            expires = OrchestratorLease.objects.get(holder="A").expires_at
            time.sleep((expires - timezone.now()).total_seconds() + 0.05)
        return acquire(self)

    monkeypatch.setattr(RateLimiter, "acquire", slow_acquire)
    desk.place("BUY", FUT, 150)
    result = orch.run_tick()
    assert any("lease lost" in e for e in result.errors)  # its write-back was refused too
    assert not faults.places  # nothing went out after the lease ran out
    assert OrderMapping.objects.filter(status=MappingStatus.SENDING).count() == 4
    monkeypatch.undo()
    _settle(orch)  # the next tick looks them up by tag, finds them absent and sends them once
    _assert_converged(desk, AFTER_BUY)
