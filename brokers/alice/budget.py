"""Alice Blue's request budgets, kept by the adapter per user id (docs/alice.md §Rate limits).

Alice Blue says order writes are "NOT LIMITED"; SEBI's cap of 10 orders a second per client still
applies. Place, modify and cancel share the engine's budget below that (`ALICE.write_budget`: 8 a
second, 180 a minute, 4,500 a day): the adapter waits out the one-second window (at most a second)
and refuses, before sending, when a longer window is spent. Every other call is limited to 1,800
per 15 minutes; a read beyond that is refused here, before anything is sent (RateLimited: retry
later). Budgets are process-wide per user id, whichever client object asks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from brokers.capabilities import ALICE
from brokers.errors import RateLimited

ORDER_WRITES: tuple[tuple[float, int], ...] = ALICE.write_budget.windows()
OTHER_CALLS: tuple[tuple[float, int], ...] = ((900.0, 1800),)
LONGEST_WAIT_S = 1.0  # a fuller window than one second is refused, not waited for


class Budget:
    """Sliding windows over the calls of one user id: `take()` waits (at most a second) or raises."""

    def __init__(
        self,
        windows: tuple[tuple[float, int], ...],
        *,
        what: str = "order",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.windows = windows
        self.what = what
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def _wait(self, now: float) -> float:
        longest = max(span for span, _ in self.windows)
        while self._sent and self._sent[0] <= now - longest:
            self._sent.popleft()
        wait = 0.0
        for span, cap in self.windows:
            inside = [t for t in self._sent if t > now - span]
            if len(inside) >= cap:
                until = inside[len(inside) - cap] + span - now
                if until > LONGEST_WAIT_S:
                    raise RateLimited(
                        f"Alice Blue's {self.what} budget of {cap} per {span:g} s is spent for this "
                        f"client; next call in {until:.0f} s",
                        code="budget_spent",
                    )
                wait = max(wait, until)
        return wait

    def take(self) -> None:
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


@dataclass
class Budgets:
    writes: Budget
    other: Budget


_budgets: dict[str, Budgets] = {}
_lock = threading.Lock()


def budgets_for(user_id: str) -> Budgets:
    """The process-wide budgets of one Alice Blue user id."""
    with _lock:
        found = _budgets.get(user_id)
        if found is None:
            found = _budgets[user_id] = Budgets(
                writes=Budget(ORDER_WRITES, what="order"), other=Budget(OTHER_CALLS, what="request")
            )
        return found


def forget_budgets() -> None:
    """Tests: start every user id afresh."""
    with _lock:
        _budgets.clear()
