"""Waking the orchestrator early (e.g. from a master order-update stream). Polling stays the truth.

Two channels: `wake()` for the loop in this process (a threading.Event), and `wake_remote()` for a
loop in another process on the same host: it stamps the modification time of a small file
(settings.WAKE_FILE, default BASE_DIR/.engine-wake), which `wait_for_wakeup` checks every 50 ms.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

STEP_S = 0.05

_wake = threading.Event()
_seen_lock = threading.Lock()
_seen: dict[Path, int | None] = {}  # wake file -> the mtime (ns) this process has acted on


def wake_file() -> Path:
    """The file another process touches to wake this one."""
    configured = settings.WAKE_FILE
    return Path(configured) if configured else Path(settings.BASE_DIR) / ".engine-wake"


def wake() -> None:
    """Ask the loop in this process to run its next tick now."""
    _wake.set()


def wake_remote() -> bool:
    """Ask the orchestrator loop in another process (same host) to run its next tick now.

    Returns False (and logs) when the wake file cannot be written; the loop then simply wakes at
    its next poll.
    """
    path = wake_file()
    stamp = time.time_ns()
    try:
        path.touch(exist_ok=True)
        os.utime(path, ns=(stamp, stamp))  # explicit stamp: two wakes within a clock tick still differ
    except OSError as exc:
        logger.warning("cannot touch the wake file %s: %s", path, exc)
        return False
    return True


def _remote_woken() -> bool:
    """True once per new stamp of the wake file. The first look at a file only records its stamp
    (a file left by an earlier run wakes nobody)."""
    path = wake_file()
    try:
        stamp: int | None = os.stat(path).st_mtime_ns
    except OSError:  # no file yet (nobody woke us), or unreadable: no remote wake
        stamp = None
    with _seen_lock:
        first_look = path not in _seen
        previous = _seen.get(path)
        _seen[path] = stamp
    return not first_look and stamp is not None and stamp != previous


def wait_for_wakeup(*, stop: threading.Event, timeout: float) -> None:
    """Sleep up to `timeout` seconds, returning early on `wake()`, on `wake_remote()` from another
    process, or when `stop` is set.

    A remote wake that arrived while the caller was busy (between two waits) ends the next wait
    at once.
    """
    step = min(STEP_S, timeout)
    waited = 0.0
    while waited < timeout and not stop.is_set():
        if _remote_woken():
            return
        if _wake.wait(step):
            _wake.clear()
            return
        waited += step
