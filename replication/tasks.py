"""django-q2 tasks and their schedules (minute granularity). The lease makes overlap safe."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from accounts.models import Account
from replication.allocation import eligible_children, refresh_child_margins
from replication.clients import ClientCache
from replication.fanout import FanOut
from replication.lease import Lease, LeaseLost, default_holder
from replication.login_check import login_check_task as _login_check
from replication.orchestrator import Orchestrator
from replication.ratelimit import LimiterRegistry
from replication.reconciliation import Grade, reconciliation_sweep
from replication.replicator import Replicator, Shard

logger = logging.getLogger(__name__)


def watchdog_tick() -> str:
    """One tick, in case the run_orchestrator loop is down. A no-op while the loop holds the lease."""
    orchestrator = Orchestrator(holder=f"watchdog:{default_holder()}")
    try:
        return orchestrator.run_tick().summary()
    finally:
        orchestrator.close()


# Each worker process keeps its clients and rate limiters across tasks.
_CLIENTS = ClientCache()
_LIMITERS = LimiterRegistry()


def dispatch_shard(index: int, count: int, holder: str, epoch: int, ttl_seconds: float) -> str:
    """Queue mode: send the intents of one shard of children on behalf of the leader's lease.

    Every write checks that lease, so a task left over from an old leader sends nothing.
    """
    lease = Lease(holder=holder, epoch=epoch, expires_at=timezone.now(), ttl=timedelta(seconds=ttl_seconds))
    replicator = Replicator(lease=lease, clients=_CLIENTS, limiters=_LIMITERS)
    try:
        report = replicator.dispatch(shard=Shard(index, count))
    except LeaseLost as exc:
        return f"shard {index}/{count}: lease lost ({exc}); nothing sent"
    finally:
        replicator.close()
    return (
        f"shard {index}/{count}: sent={report.sent} accepted={report.accepted} rejected={report.rejected} "
        f"unknown={report.unknown} failed={report.failed} deferred={report.deferred}"
    )


def refresh_child_margins_task() -> int:
    """A fresh margin snapshot for every eligible child (read-only broker calls)."""
    children: list[Account] = list(eligible_children())
    fanout = FanOut()
    try:
        return len(refresh_child_margins(children, clients=ClientCache(), fanout=fanout))
    finally:
        fanout.close()


def reconciliation_sweep_task() -> str:
    drifts = reconciliation_sweep()
    bad = sum(1 for d in drifts if d.grade != Grade.OK)
    return f"{len(drifts)} positions checked, {bad} drifting"


def login_check_task() -> str:
    """Pre-open check: log, audit and email the Kite accounts that need their daily login."""
    return _login_check()


SCHEDULES = {
    "engine watchdog tick": ("replication.tasks.watchdog_tick", Schedule.MINUTES, 1),
    "child margin refresh": ("replication.tasks.refresh_child_margins_task", Schedule.MINUTES, 1),
    "reconciliation sweep": ("replication.tasks.reconciliation_sweep_task", Schedule.MINUTES, 5),
    "kite pre-open login check": ("replication.tasks.login_check_task", Schedule.DAILY, 0),
    # A string path only: the engine never imports replication.alerts (an import contract).
    "alert scan": ("replication.alerts.tasks.alerts_scan_task", Schedule.MINUTES, 1),
}
# Daily schedules run at a fixed IST wall-clock time (IST has no daylight saving).
DAILY_AT_IST = {"kite pre-open login check": time(8, 45)}


def next_daily_run(at: time, *, now: datetime | None = None) -> datetime:
    """The next `at` (IST wall clock) after `now`, in UTC."""
    ist = ZoneInfo("Asia/Kolkata")
    local = (now or timezone.now()).astimezone(ist)
    run = datetime.combine(local.date(), at, tzinfo=ist)
    if run <= local:
        run += timedelta(days=1)
    return run.astimezone(UTC)


def sync_schedules() -> list[str]:
    """Create or update the engine's schedules by name (idempotent); returns their names."""
    for name, (func, kind, minutes) in SCHEDULES.items():
        defaults = {"func": func, "schedule_type": kind, "minutes": minutes, "repeats": -1}
        if name in DAILY_AT_IST:
            defaults["next_run"] = next_daily_run(DAILY_AT_IST[name])
        Schedule.objects.update_or_create(name=name, defaults=defaults)
    logger.info("django-q2 schedules synced (%s)", settings.Q_CLUSTER.get("name"))
    return list(SCHEDULES)
