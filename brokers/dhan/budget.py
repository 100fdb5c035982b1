"""Dhan's order-write budget, kept by the adapter per client id (docs/dhan.md §Rate limits).

Place, modify and cancel share Dhan's limits: 10 a second, 250 a minute, 1,000 an hour, 7,000 a
day, answered DH-904 when breached. The adapter spends the capability record's `write_budget`
(8/s, 200/min, 900/h, 6,500/day), below them, so a clock skew between the two ends never breaches.
`WriteBudget.take` waits out the one-second window (at most a second) and raises RateLimited (code
`budget_spent`) before anything is sent when a longer window is spent: the engine sends the order
in a later tick. The approach is brokers.angel.budget's, with the windows as a parameter.
Process-wide per client id.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from brokers.capabilities import DHAN
from brokers.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Window:
    seconds: float
    limit: int


ORDER_WRITES = tuple(Window(span, cap) for span, cap in DHAN.write_budget.windows())
LONGEST_WAIT_S = 1.0


class WriteBudget:
    """Sliding windows over the order writes of one client id."""

    def __init__(
        self,
        windows: tuple[Window, ...] = ORDER_WRITES,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.windows = windows
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def _wait(self, now: float) -> float:
        longest = max(w.seconds for w in self.windows)
        while self._sent and self._sent[0] <= now - longest:
            self._sent.popleft()
        wait = 0.0
        for window in self.windows:
            inside = [t for t in self._sent if t > now - window.seconds]
            if len(inside) >= window.limit:
                until = inside[len(inside) - window.limit] + window.seconds - now
                if until > LONGEST_WAIT_S:
                    raise RateLimited(
                        f"Dhan's order budget of {window.limit} per {window.seconds:g} s is spent for this "
                        f"client; next write in {until:.0f} s",
                        code="budget_spent",
                    )
                wait = max(wait, until)
        return wait

    def take(self) -> None:
        """Count one order write, waiting (at most a second) for the per-second window."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now)
                if wait <= 0:
                    self._sent.append(now)
                    return
            self._sleep(wait)

    def used(self, seconds: float) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._sent if t > now - seconds)


_budgets: dict[str, WriteBudget] = {}
_lock = threading.Lock()


def budget_for(client_id: str) -> WriteBudget:
    """The process-wide order-write budget of one Dhan client id."""
    with _lock:
        found = _budgets.get(client_id)
        if found is None:
            found = _budgets[client_id] = WriteBudget()
        return found


def set_budget(client_id: str, budget: WriteBudget) -> None:
    """Tests and benches: replace one client id's budget."""
    with _lock:
        _budgets[client_id] = budget


def forget_budgets() -> None:
    """Tests: start every client id afresh."""
    with _lock:
        _budgets.clear()
