"""Alice Blue's request budgets, kept by the adapter per user id (docs/alice.md §Rate limits).

Alice Blue says order writes are "NOT LIMITED"; SEBI's cap of 10 orders a second per client still
applies. Place, modify and cancel share the engine's budget below that (`ALICE.write_budget`: 8 a
second, 180 a minute, 4,500 a day): the adapter waits out the one-second window (at most a second)
and refuses, before sending, when a longer window is spent. Every other call is limited to 1,800
per 15 minutes; a read beyond that is refused here, before anything is sent (RateLimited: retry
later). Budgets are process-wide per user id, whichever client object asks. The windows and the
registry are brokers.budget's.
"""

from __future__ import annotations

from dataclasses import dataclass

from brokers.budget import LONGEST_WAIT_S, Registry, SlidingBudget
from brokers.capabilities import ALICE

__all__ = [
    "LONGEST_WAIT_S",
    "ORDER_WRITES",
    "OTHER_CALLS",
    "Budget",
    "Budgets",
    "budgets_for",
    "forget_budgets",
]

ORDER_WRITES: tuple[tuple[float, int], ...] = ALICE.write_budget.windows()
OTHER_CALLS: tuple[tuple[float, int], ...] = ((900.0, 1800),)


class Budget(SlidingBudget):
    """Sliding windows over the calls of one user id: `take()` waits (at most a second) or raises."""

    broker = "Alice Blue"
    unit = "call"
    default_windows = ORDER_WRITES


@dataclass
class Budgets:
    writes: Budget
    other: Budget


def _new_budgets() -> Budgets:
    return Budgets(writes=Budget(ORDER_WRITES, what="order"), other=Budget(OTHER_CALLS, what="request"))


_budgets: Registry[Budgets] = Registry(_new_budgets)


def budgets_for(user_id: str) -> Budgets:
    """The process-wide budgets of one Alice Blue user id."""
    return _budgets.get(user_id)


def forget_budgets() -> None:
    """Tests: start every user id afresh."""
    _budgets.forget()
