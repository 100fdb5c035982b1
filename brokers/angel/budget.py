"""Angel One's request budgets, kept by the adapter per client code (docs/angel.md §Rate limits).

Place, modify and cancel share one budget: 9 a second, 500 a minute, 1,000 an hour; a breach is
answered 403 and, past three a minute, can block the app. The order book and positions allow one
call a second, RMS two, login one. `WriteBudget.take` waits out the one-second window (at most a
second) and raises RateLimited, before anything is sent, when the minute's or the hour's budget is
spent: the engine sends the order in a later tick. The budgets are process-wide per client code,
whichever client object asks (the engine rebuilds a client when an account changes).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from brokers.capabilities import ANGEL
from brokers.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Window:
    seconds: float
    limit: int


# Angel's published limits for place + modify + cancel (9/s, 500/min, 1,000/h), from its record.
ORDER_WRITES = tuple(Window(span, cap) for span, cap in ANGEL.write_limits.windows())
LONGEST_WAIT_S = 1.0  # a fuller window than one second is refused, not waited for


class WriteBudget:
    """Sliding windows over the order writes of one client code."""

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
                        f"Angel One's order budget of {window.limit} per {window.seconds:g} s is spent "
                        f"for this client; next write in {until:.0f} s",
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


class Pacer:
    """At most `per_second` calls a second (the order book, positions, RMS, login)."""

    def __init__(
        self,
        per_second: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.gap = 1.05 / per_second  # 5 % slack: a request can take longer on the wire than the next
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.gap
        if start > now:
            self._sleep(start - now)


@dataclass
class Budgets:
    writes: WriteBudget
    book: Pacer
    positions: Pacer
    rms: Pacer
    login: Pacer


_budgets: dict[str, Budgets] = {}
_lock = threading.Lock()


def budgets_for(client_code: str) -> Budgets:
    """The process-wide budgets of one Angel client code."""
    with _lock:
        found = _budgets.get(client_code)
        if found is None:
            found = _budgets[client_code] = Budgets(
                writes=WriteBudget(),
                book=Pacer(ANGEL.book_reads.per_second or 1),
                positions=Pacer(1),
                rms=Pacer(2),
                login=Pacer(1),
            )
        return found


def forget_budgets() -> None:
    """Tests: start every client code afresh."""
    with _lock:
        _budgets.clear()
