"""Dhan's order-write budget, kept by the adapter per client id (docs/dhan.md §Rate limits).

Place, modify and cancel share Dhan's limits: 10 a second, 250 a minute, 1,000 an hour, 7,000 a
day, answered DH-904 when breached. The adapter spends the capability record's `write_budget`
(8/s, 200/min, 900/h, 6,500/day), below them, so a clock skew between the two ends never breaches.
`WriteBudget.take` waits out the one-second window (at most a second) and raises RateLimited (code
`budget_spent`) before anything is sent when a longer window is spent: the engine sends the order
in a later tick. The windows and the registry are brokers.budget's. Process-wide per client id.
"""

from __future__ import annotations

from brokers.budget import LONGEST_WAIT_S, Registry, SlidingBudget, Window, windows_of
from brokers.capabilities import DHAN

__all__ = [
    "LONGEST_WAIT_S",
    "ORDER_WRITES",
    "Window",
    "WriteBudget",
    "budget_for",
    "forget_budgets",
    "set_budget",
]

ORDER_WRITES = windows_of(DHAN.write_budget)


class WriteBudget(SlidingBudget):
    """Sliding windows over the order writes of one client id."""

    broker = "Dhan"
    default_windows = ORDER_WRITES


_budgets: Registry[WriteBudget] = Registry(WriteBudget)


def budget_for(client_id: str) -> WriteBudget:
    """The process-wide order-write budget of one Dhan client id."""
    return _budgets.get(client_id)


def set_budget(client_id: str, budget: WriteBudget) -> None:
    """Tests and benches: replace one client id's budget."""
    _budgets.set(client_id, budget)


def forget_budgets() -> None:
    """Tests: start every client id afresh."""
    _budgets.forget()
