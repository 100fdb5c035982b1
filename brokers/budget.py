"""The request budgets an adapter keeps on its own side of a broker's rate limits.

Shared by the Angel One, Dhan and Alice Blue adapters (brokers/<broker>/budget.py keep only their
limits, their label and which budgets a client holds):

- `SlidingBudget`: sliding windows (seconds, calls allowed), from a capability record's
  `RateBudget.windows()`. `take()` waits out a window that frees up within `LONGEST_WAIT_S` (the
  one-second window) and raises RateLimited (code `budget_spent`, not permanent) before anything is
  sent when a longer window is spent: the engine sends the order in a later tick.
- `Pacer`: at most n calls a second, by waiting.
- `Registry`: process-wide budgets per account key (client code, client id, user id), whichever
  client object asks (the engine rebuilds a client when an account changes); `set`/`forget` for
  tests and benches.

Standard library and brokers.capabilities/errors only (an import-linter contract holds it).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import ClassVar, Generic, NamedTuple, TypeVar

from brokers.capabilities import RateBudget
from brokers.errors import RateLimited

LONGEST_WAIT_S = 1.0  # a fuller window than one second is refused, not waited for


class Window(NamedTuple):
    """One sliding window: at most `limit` calls in any `seconds`. A plain (seconds, limit) pair too."""

    seconds: float
    limit: int


def windows_of(budget: RateBudget) -> tuple[Window, ...]:
    """A capability record's limits as windows, shortest first."""
    return tuple(Window(span, cap) for span, cap in budget.windows())


class SlidingBudget:
    """Sliding windows over the calls of one account: `take()` waits (at most a second) or raises.

    A subclass names its broker (the refusal reads "<broker>'s order budget of 9 per 1 s is spent
    for this client; next write in 3 s") and its default windows.
    """

    broker: ClassVar[str] = "The broker"
    unit: ClassVar[str] = "write"  # what the refusal says comes next: "next write in 3 s"
    default_windows: ClassVar[tuple[tuple[float, int], ...]] = ()

    def __init__(
        self,
        windows: Iterable[tuple[float, int]] | None = None,
        *,
        what: str = "order",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.windows: tuple[Window, ...] = tuple(
            Window(span, cap) for span, cap in (self.default_windows if windows is None else windows)
        )
        if not self.windows:
            raise ValueError("a budget needs at least one window")
        self.what = what
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
                        f"{self.broker}'s {self.what} budget of {window.limit} per {window.seconds:g} s "
                        f"is spent for this client; next {self.unit} in {until:.0f} s",
                        code="budget_spent",
                    )
                wait = max(wait, until)
        return wait

    def take(self) -> None:
        """Count one call, waiting (at most a second) for the per-second window."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now)
                if wait <= 0:
                    self._sent.append(now)
                    return
            self._sleep(wait)

    def used(self, seconds: float) -> int:
        """Calls counted in the last `seconds`."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._sent if t > now - seconds)


class Pacer:
    """At most `per_second` calls a second, by waiting (an order book, positions, funds, login)."""

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


B = TypeVar("B")


class Registry(Generic[B]):
    """Process-wide budgets per account key, made on first use by `make`."""

    def __init__(self, make: Callable[[], B]) -> None:
        self._make = make
        self._found: dict[str, B] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> B:
        with self._lock:
            found = self._found.get(key)
            if found is None:
                found = self._found[key] = self._make()
            return found

    def set(self, key: str, budgets: B) -> None:
        """Tests and benches: replace one account's budgets."""
        with self._lock:
            self._found[key] = budgets

    def forget(self) -> None:
        """Tests: start every account afresh."""
        with self._lock:
            self._found.clear()
