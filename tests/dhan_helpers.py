"""The Dhan simulator on loopback for a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.test import override_settings

from brokers.dhan.budget import forget_budgets
from lab.dhan_sim.server import DhanSim, RunningSim, start


@contextmanager
def running_dhan_sim(sim: DhanSim | None = None) -> Iterator[RunningSim]:
    """A fresh simulator, the adapter pointed at it, and Dhan's write budgets forgotten around it."""
    forget_budgets()
    running = start(sim=sim)
    try:
        with override_settings(DHAN_API_ROOT=running.root, DHAN_WS_ROOT=running.ws_root):
            yield running
    finally:
        running.stop()
        forget_budgets()
