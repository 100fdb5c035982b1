"""The scheduled alert scan lets its worker go when the process is asked to stop (Ctrl-C on
`make run`), instead of holding it for the rest of ALERT_SCAN_SPAN_SECONDS."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from django.test import override_settings

from replication.alerts.tasks import alerts_scan_task

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_alert_scan_ends_after_its_pass_when_the_worker_is_told_to_stop(signum: int) -> None:
    before = signal.getsignal(signum)
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signum))
    with override_settings(ALERT_SCAN_SECONDS=1, ALERT_SCAN_SPAN_SECONDS=30):
        started = time.monotonic()
        timer.start()
        result = alerts_scan_task()
        took = time.monotonic() - started
    timer.join()
    assert took < 3, f"the scan held on for {took:.1f} s after being told to stop"
    assert result.startswith("1 alert scan pass(es)")
    assert signal.getsignal(signum) is before  # the worker's own handling is back


def test_alert_scan_runs_its_span_when_nobody_stops_it() -> None:
    with override_settings(ALERT_SCAN_SECONDS=1, ALERT_SCAN_SPAN_SECONDS=2):
        started = time.monotonic()
        result = alerts_scan_task()
        took = time.monotonic() - started
    assert result.startswith("2 alert scan pass(es)")
    assert 1 <= took < 2.5
