"""The Angel One simulator on loopback for a test (the `angel_sim` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

from django.test import override_settings

from brokers.angel.budget import forget_budgets
from lab.angel_sim.server import RunningSim, start


def running_angel_sim() -> Iterator[RunningSim]:
    """A fresh simulator, the adapter pointed at it, and Angel's write budgets forgotten around it."""
    forget_budgets()
    sim = start()
    try:
        with override_settings(ANGEL_API_ROOT=sim.root):
            yield sim
    finally:
        sim.stop()
        forget_budgets()
