"""Angel One's request budgets, kept by the adapter per client code (docs/angel.md §Rate limits).

Place, modify and cancel share one budget: 9 a second, 500 a minute, 1,000 an hour; a breach is
answered 403 and, past three a minute, can block the app. The order book and positions allow one
call a second, RMS two, login one. `WriteBudget.take` waits out the one-second window (at most a
second) and raises RateLimited, before anything is sent, when the minute's or the hour's budget is
spent: the engine sends the order in a later tick. The budgets are process-wide per client code,
whichever client object asks (the engine rebuilds a client when an account changes). The windows,
the pacing and the registry are brokers.budget's.
"""

from __future__ import annotations

from dataclasses import dataclass

from brokers.budget import LONGEST_WAIT_S, Pacer, Registry, SlidingBudget, Window, windows_of
from brokers.capabilities import ANGEL

__all__ = [
    "LONGEST_WAIT_S",
    "ORDER_WRITES",
    "Budgets",
    "Pacer",
    "Window",
    "WriteBudget",
    "budgets_for",
    "forget_budgets",
]

# Angel's published limits for place + modify + cancel (9/s, 500/min, 1,000/h), from its record.
ORDER_WRITES = windows_of(ANGEL.write_limits)


class WriteBudget(SlidingBudget):
    """Sliding windows over the order writes of one client code."""

    broker = "Angel One"
    default_windows = ORDER_WRITES


@dataclass
class Budgets:
    writes: WriteBudget
    book: Pacer
    positions: Pacer
    rms: Pacer
    login: Pacer


def _new_budgets() -> Budgets:
    return Budgets(
        writes=WriteBudget(),
        book=Pacer(ANGEL.book_reads.per_second or 1),
        positions=Pacer(1),
        rms=Pacer(2),
        login=Pacer(1),
    )


_budgets: Registry[Budgets] = Registry(_new_budgets)


def budgets_for(client_code: str) -> Budgets:
    """The process-wide budgets of one Angel client code."""
    return _budgets.get(client_code)


def forget_budgets() -> None:
    """Tests: start every client code afresh."""
    _budgets.forget()
