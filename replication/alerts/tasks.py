"""django-q2 tasks of the alerts and their schedule. The engine never calls these: a failing or
slow channel only ever holds a task worker, never a tick."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django_q.models import Schedule
from django_q.tasks import async_task

from replication.alerts.services import alert_deliver, alerts_scan

logger = logging.getLogger(__name__)

DELIVER = "replication.alerts.tasks.alert_deliver_task"

# django-q2 schedules have minute granularity (its scheduler wakes about every 30 s), so the
# scheduled task scans every ALERT_SCAN_SECONDS for ALERT_SCAN_SPAN_SECONDS (below Q_CLUSTER's
# timeout), then ends; the next minute's run takes over. Passes never overlap (the cursor's lock).
SCHEDULES = {"alert scan": ("replication.alerts.tasks.alerts_scan_task", Schedule.MINUTES, 1)}


def alerts_scan_once() -> int:
    """One scanner pass, then one delivery task queued per due delivery. Returns how many."""
    due = alerts_scan()
    for delivery_id in due:
        async_task(DELIVER, delivery_id, group="alerts")
    return len(due)


@contextmanager
def _stop_on_interrupt() -> Iterator[list[bool]]:
    """A flag set when the process is asked to stop (SIGINT or SIGTERM) while a scan runs.

    django-q2's workers ignore SIGINT and its cluster waits for running tasks, so a scan holding a
    worker for ALERT_SCAN_SPAN_SECONDS would hold a Ctrl-C of `make run` as long. Outside a
    process's main thread (no signal handlers there) the flag is never set."""
    stop = [False]

    def handler(signum: int, frame: object) -> None:
        stop[0] = True

    previous: dict[int, object] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield stop
    finally:
        for restored, old in previous.items():
            signal.signal(restored, old)  # type: ignore[arg-type]


def alerts_scan_task() -> str:
    """The scheduled scanner: passes every ALERT_SCAN_SECONDS for ALERT_SCAN_SPAN_SECONDS (0: one);
    it ends early (after its current pass) when the process is asked to stop."""
    started = time.monotonic()
    passes = queued = 0
    with _stop_on_interrupt() as stop:
        while not stop[0]:
            queued += alerts_scan_once()
            passes += 1
            if time.monotonic() - started + settings.ALERT_SCAN_SECONDS > settings.ALERT_SCAN_SPAN_SECONDS:
                break
            resume = time.monotonic() + settings.ALERT_SCAN_SECONDS
            while not stop[0] and time.monotonic() < resume:
                time.sleep(min(0.2, max(resume - time.monotonic(), 0)))
    return f"{passes} alert scan pass(es), {queued} deliveries queued"


def alert_deliver_task(delivery_id: int) -> str:
    """Send one delivery (its retries are queued again by the scanner once due)."""
    return alert_deliver(delivery_id=delivery_id)


def alerts_sync_schedules() -> list[str]:
    """Create or update the alert schedules by name (idempotent); returns their names."""
    for name, (func, kind, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": kind, "minutes": minutes, "repeats": -1}
        )
    return list(SCHEDULES)
