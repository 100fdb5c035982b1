"""The chaos soak (issue 7), short: the same session `make soak` runs long, with fewer events and
children, in the normal suite; the invariants it reports; the same seed replaying the same session."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from accounts.models import Account, AccountStatus
from accounts.services import account_set_status
from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_order_place
from lab.soak import SoakConfig, check_invariants, run_soak
from replication.lease import lease_acquire
from replication.models import MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from replication.replicator import Replicator
from tests.engine_helpers import FUT, build_desk
from tests.faulty_broker import Faults, FaultyBroker, install

ROOT = Path(__file__).resolve().parents[2]
# The Kite-path faults of issue 7 only (`money=False`): the session and seed these tests were written for.
SHORT = SoakConfig(seed=20251121, events=25, children=6, fault_rate=0.4, workers=4, money=False)


@pytest.mark.django_db(transaction=True)
def test_soak_short_session_duplicates_and_loses_nothing():
    report = run_soak(SHORT)

    assert report.findings.problems() == [], report.line()
    assert (len(report.findings.duplicates), len(report.findings.lost)) == (0, 0)
    assert report.events == 25
    assert report.findings.child_orders > 25  # the children really traded
    # The faults were switched on, the simulator really answered with errors, and the engine had to
    # recover: orders sent again after a 429, unanswered orders looked up by their tag.
    assert report.faults_injected > 0
    assert report.fault_responses > 0
    assert report.engine["send_deferred"] > 0
    assert report.engine["found_by_tag"] > 0
    assert report.line().startswith(f"events=25 child_orders={report.findings.child_orders} faults_injected=")


@pytest.mark.django_db(transaction=True)
def test_soak_same_seed_replays_the_same_events_and_faults():
    config = SoakConfig(seed=99, events=12, children=3, fault_rate=0.6, workers=2, money=False)
    first = run_soak(config)
    call_command("flush", interactive=False, verbosity=0)
    second = run_soak(config)
    call_command("flush", interactive=False, verbosity=0)
    other = run_soak(SoakConfig(seed=100, events=12, children=3, fault_rate=0.6, workers=2, money=False))

    def decided(r):
        return (
            r.schedule,
            r.events,
            dict(r.event_kinds),
            r.master_orders,
            r.faults_injected,
            dict(r.fault_kinds),
        )

    assert decided(first) == decided(second)
    assert first.faults_injected > 0
    assert other.schedule != first.schedule  # the fingerprint does depend on the seed
    assert first.ok and second.ok and other.ok


@pytest.mark.django_db
def test_soak_invariants_name_starved_exits_and_cap_breaches():
    """Issue 11, proof: the soak's verdict names a child still holding where the master is flat (an
    exit owed and not sent: here the child was halted when the master exited) and a child order
    above the child's caps (C2 was capped at 2 lots after its 4-lot entry: the entry breaches it;
    its exit is split into orders within the cap, so the exit does not)."""
    desk = build_desk()
    orch = Orchestrator(holder="money-invariants", workers=0)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()
    assert check_invariants().problems() == []

    Account.objects.filter(pk=desk.children["C2"].pk).update(max_lots_per_order=2)
    account_set_status(account=desk.children["C1"], status=AccountStatus.HALTED, actor="t", reason="t")
    desk.place("SELL", FUT, 150)
    orch.run_tick()
    orch.run_tick()  # the exits' fills recorded
    orch.close()

    found = check_invariants()
    assert found.starved == ["C1 NIFTY25DECFUT: holds 75"]
    (entry,) = found.cap_breaches
    assert entry.startswith("C2 ") and entry.endswith(" entry BUY 300 NIFTY25DECFUT MARKET: 4 lots > 2")
    assert not found.ok
    assert [p.split(":")[0] for p in found.problems()] == ["starved", "cap_breaches"]


@pytest.mark.django_db(transaction=True)
def test_soak_invariants_name_duplicates_lost_and_orphan_orders():
    desk = build_desk()
    orch = Orchestrator(holder="invariants", workers=0)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()
    assert check_invariants().problems() == []

    c1 = OrderMapping.objects.get(child=desk.children["C1"], quantity__gt=0)
    paper_order_place(
        user_id="C1", exchange="NFO", tradingsymbol=FUT, side="BUY", quantity=75, product="NRML",
        order_type="MARKET", tag=c1.tag,
    )  # fmt: skip
    c4 = OrderMapping.objects.get(child=desk.children["C4"], quantity__gt=0)
    OrderMapping.objects.filter(pk=c4.pk).update(tag="RLOSTC4S0")  # its broker order loses its intent

    found = check_invariants()
    assert found.duplicates == [c1.tag]
    assert found.lost == ["RLOSTC4S0(filled)"]
    assert found.orphans == [f"C4:{PaperOrder.objects.get(tag=c4.tag).order_id}"]
    assert "C1 NIFTY25DECFUT: broker 150, engine 75" in found.drift
    assert not found.ok

    # Surfaced to staff (FAILED with a reason) is not lost; the orphan order stays an orphan.
    OrderMapping.objects.filter(pk=c4.pk).update(status=MappingStatus.FAILED, reason="not placed: test")
    assert check_invariants().lost == []


@pytest.mark.django_db
def test_unknown_order_is_absent_only_in_a_book_read_a_grace_period_after_the_send(monkeypatch):
    """Chasing a duplicate the soak reported on a saturated machine (grace 3 s): the look-up read
    the clock *after* the book, so a slow read shortened the grace by its own length, and a book
    fetched before the grace ran out could prove an order absent (and have it sent again) while
    it was still on its way. The clock is now read before the book."""
    faults = Faults(unknown_not_placed={"C1"})
    restore = install(faults)
    try:
        desk = build_desk()
        orch = Orchestrator(holder="grace", workers=0)
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
        orch.close()
        c1 = OrderMapping.objects.get(child=desk.children["C1"], quantity__gt=0)
        assert c1.status == MappingStatus.UNKNOWN
        sent = timezone.now() - timedelta(hours=1)
        OrderMapping.objects.filter(pk=c1.pk).update(sent_at=sent)
        clock = [sent + timedelta(seconds=29)]
        slow_read = FaultyBroker.orders

        def orders_taking_two_seconds(self):  # type: ignore[no-untyped-def]
            book = slow_read(self)
            clock[0] += timedelta(seconds=2)
            return book

        monkeypatch.setattr(FaultyBroker, "orders", orders_taking_two_seconds)
        with override_settings(UNKNOWN_GRACE_SECONDS=30):
            lease = lease_acquire(holder="grace-check")
            assert lease is not None
            replicator = Replicator(lease=lease, workers=0, now=lambda: clock[0])
            replicator.follow_up(children=[c1.child_id])
            c1.refresh_from_db()
            assert c1.status == MappingStatus.UNKNOWN  # read at 29 s: not proof of absence

            replicator.follow_up(children=[c1.child_id])  # read at 31 s: absent, sent again
            c1.refresh_from_db()
            assert (c1.status, c1.reason_code) == (MappingStatus.PLANNED, "absent")
    finally:
        restore()


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test", "LOG_LEVEL": "ERROR"}
    env.pop("DATABASE_URL", None) if "postgres" not in os.environ.get("DATABASE_URL", "") else None
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )


def test_soak_command_prints_the_figures_and_the_replay_command():
    done = _manage("soak", "--seed", "3", "--events", "6", "--children", "2", "--workers", "2")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2].startswith("events=6 child_orders=")
    fields = dict(part.split("=", 1) for part in lines[-2].split())
    assert (fields["duplicates"], fields["lost"], fields["seed"]) == ("0", "0", "3")
    assert lines[-1] == (
        "replay: DJANGO_SETTINGS_MODULE=pms.settings_test python manage.py soak "
        "--seed 3 --events 6 --children 2 --fault-rate 0.3 --workers 2"
    )


def test_soak_command_rejects_a_fault_rate_above_one():
    done = _manage("soak", "--fault-rate", "1.5")
    assert done.returncode != 0
    assert "--fault-rate must be between 0 and 1" in done.stderr
