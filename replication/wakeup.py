"""Waking the orchestrator early (e.g. from a master order-update stream). Polling stays the truth."""

from __future__ import annotations

import threading

_wake = threading.Event()


def wake() -> None:
    """Ask the loop in this process to run its next tick now."""
    _wake.set()


def wait_for_wakeup(*, stop: threading.Event, timeout: float) -> None:
    """Sleep up to `timeout` seconds, returning early on `wake()` or when `stop` is set."""
    step = min(0.05, timeout)
    waited = 0.0
    while waited < timeout and not stop.is_set():
        if _wake.wait(step):
            _wake.clear()
            return
        waited += step
