"""The engine's entry points: run_orchestrator, demo, bench_fanout, master_positions, reconcile, schedules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import Schedule

from brokers.paper.services import paper_order_place
from lab.demo import run_script
from replication.lease import lease_acquire
from replication.management.commands.run_orchestrator import install_signal_handlers, run_loop
from replication.models import MarginSnapshot, ReplicationEvent, TickRun
from replication.orchestrator import Orchestrator
from replication.tasks import SCHEDULES, refresh_child_margins_task, sync_schedules, watchdog_tick
from tests.engine_helpers import FUT, build_desk

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test"}
    env.pop("DATABASE_URL", None) if "postgres" not in os.environ.get("DATABASE_URL", "") else None
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.django_db
def test_run_orchestrator_once_prints_one_tick_line():
    desk = build_desk()
    out = StringIO()
    call_command("run_orchestrator", "--once", stdout=out)
    desk.place("BUY", FUT, 150)
    call_command("run_orchestrator", "--once", stdout=out)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("tick ")]
    assert len(lines) == 2
    assert "events=1" in lines[1] and "accepted=4" in lines[1]
    assert desk.positions(FUT)["C2"] == 300


@pytest.mark.django_db
def test_run_orchestrator_rejects_bad_interval():
    with pytest.raises(CommandError, match="positive"):
        call_command("run_orchestrator", "--interval", "0")


@pytest.mark.django_db
def test_run_loop_sigterm_finishes_the_current_tick_then_stops(monkeypatch):
    """SIGTERM arriving in the middle of a tick that fans out a master order: that tick still
    sends every child's order and records its outcome; no tick runs after it."""
    desk = build_desk()
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    install_signal_handlers(stop)
    real = Orchestrator.run_tick
    calls: list[int] = []

    def run_tick(self: Orchestrator) -> object:
        calls.append(1)
        if len(calls) == 2:
            desk.place("BUY", FUT, 150)  # the event this tick acts on
            os.kill(os.getpid(), signal.SIGTERM)  # arrives once the tick is under way
        return real(self)

    monkeypatch.setattr(Orchestrator, "run_tick", run_tick)
    lines: list[str] = []
    try:
        ticks = run_loop(stop=stop, interval=0.01, max_ticks=None, write=lines.append)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert ticks == 2 and len(calls) == 2
    assert lines[-1].endswith("stopped after 2 ticks")
    assert TickRun.objects.filter(outcome="ok").count() == 2
    assert " sent=4 accepted=4 " in lines[-2]  # the interrupted tick sent every child's order
    assert desk.positions(FUT) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}  # DESIGN §3.6


@pytest.mark.django_db
def test_demo_script_keeps_every_child_in_proportion():
    desk = build_desk()
    orch = Orchestrator(holder="demo-test", workers=0)
    try:
        results = run_script(desk, orch)
    finally:
        orch.close()
    assert [r.ok for r in results] == [True] * len(results)
    assert all(not r.errors for r in results)


def test_demo_command_end_to_end():
    done = _manage("demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every child stayed in proportion at every step" in done.stdout
    assert done.stdout.count(": ok") == 7


def test_bench_fanout_prints_the_figures_line():
    done = _manage(
        "bench_fanout", "--children", "20", "--latency-ms", "5", "--workers", "8", "--sizing-children", "500"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("bench: children=20 latency_ms=5 ")
    fields = dict(part.split("=") for part in last.split()[1:])
    assert set(fields) == {
        "children",
        "latency_ms",
        "sizing_ms",
        "tick_ms",
        "fanout_s",
        "p99_child_ms",
        "queries_per_tick",
    }
    assert float(fields["fanout_s"]) > 0 and int(fields["queries_per_tick"]) > 0
    assert "20 child orders placed" in done.stdout


def test_bench_fanout_rejects_bad_input():
    done = _manage("bench_fanout", "--children", "0")
    assert done.returncode != 0 and "--children must be between" in done.stderr


@pytest.mark.django_db
def test_master_positions_shows_the_masters_book():
    desk = build_desk()
    paper_order_place(
        user_id="MASTER",
        exchange="NFO",
        tradingsymbol=FUT,
        side="BUY",
        quantity=150,
        product="NRML",
        order_type="MARKET",
    )
    out = StringIO()
    call_command("master_positions", stdout=out)
    text = out.getvalue()
    assert "NFO:NIFTY25DECFUT" in text and "150" in text
    assert desk.master.broker_user_id in text


@pytest.mark.django_db
def test_master_positions_without_master_is_a_clear_error():
    with pytest.raises(CommandError, match="no enabled master"):
        call_command("master_positions")


@pytest.mark.django_db
def test_reconcile_flags_a_position_closed_by_hand():
    desk = build_desk()
    orch = Orchestrator(holder="t", workers=0)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()  # the next tick refreshes the children's fills
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "0 major" in out.getvalue()
    desk.place("SELL", FUT, 300, user="C2")  # the client closes by hand
    with pytest.raises(SystemExit) as exit_:
        call_command("reconcile", "--record", stdout=out)
    assert exit_.value.code == 1
    assert "major" in out.getvalue()
    assert ReplicationEvent.objects.filter(kind="reconciliation_drift", account=desk.children["C2"]).exists()


@pytest.mark.django_db
def test_schedules_sync_idempotently():
    sync_schedules()
    sync_schedules()
    assert Schedule.objects.count() == len(SCHEDULES)
    assert set(Schedule.objects.values_list("func", flat=True)) == {v[0] for v in SCHEDULES.values()}


@pytest.mark.django_db
def test_watchdog_tick_is_a_no_op_while_the_loop_holds_the_lease():
    build_desk()
    assert lease_acquire(holder="the-loop") is not None
    assert "not leader" in watchdog_tick()


@pytest.mark.django_db
def test_child_margin_refresh_task_snapshots_every_child():
    desk = build_desk()
    assert refresh_child_margins_task() == len(desk.children)
    assert MarginSnapshot.objects.filter(account__in=desk.children.values()).count() == len(desk.children)
