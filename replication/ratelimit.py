"""Per-account order-write rate limiter, within each broker's budget for every window.

The budget comes from the account's broker capabilities (`brokers.capabilities`: `write_budget`,
kept below the broker's published limits: Kite 8/s, 180/min, 4,500/day against 10/s, 400/min,
5,000/day; Angel 8/s, 180/min, 900/h against 9/s, 500/min, 1,000/h). Thread-safe sliding windows.
`acquire` blocks until a write is allowed within the short windows (a second, a minute) and raises
`BudgetExhausted` when a long one (an hour, a day) is spent: a worker never sleeps for an hour.
Reads do not use it. One limiter per account per process; in queue mode each worker owns its
shard's limiters (DESIGN §7).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from brokers.capabilities import RateBudget, UnknownCapabilities, capabilities_for

LONGEST_WAIT_S = 60.0  # windows longer than this raise instead of waiting


@dataclass(frozen=True, slots=True)
class Limits:
    """Order writes allowed per window (None: no limit for that window)."""

    per_second: int | None = 8
    per_minute: int | None = 180
    per_day: int | None = 4500
    per_hour: int | None = None

    @classmethod
    def from_budget(cls, budget: RateBudget) -> Limits:
        return cls(
            per_second=budget.per_second,
            per_minute=budget.per_minute,
            per_day=budget.per_day,
            per_hour=budget.per_hour,
        )

    def windows(self) -> tuple[tuple[float, int], ...]:
        """(span in seconds, writes allowed), shortest first."""
        spans = (
            (1.0, self.per_second),
            (60.0, self.per_minute),
            (3600.0, self.per_hour),
            (86400.0, self.per_day),
        )
        return tuple((span, cap) for span, cap in spans if cap is not None)


class BudgetExhausted(Exception):
    """An hour's or a day's order budget is spent: nothing is sent until the window moves on."""


# The name the send paths catch (the day was the only long window before the hour was added).
DailyBudgetExhausted = BudgetExhausted

_WINDOW_NAMES = {3600.0: "hourly", 86400.0: "daily"}


class RateLimiter:
    def __init__(
        self,
        limits: Limits = Limits(),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._windows = [(span, cap, deque[float]()) for span, cap in limits.windows()]
        self._lock = threading.Lock()

    def _wait_needed(self, now: float) -> float:
        for span, cap, window in self._windows:
            while window and window[0] <= now - span:
                window.popleft()
            if len(window) >= cap:
                if span > LONGEST_WAIT_S:
                    name = _WINDOW_NAMES.get(span, f"{span:g} s")
                    raise BudgetExhausted(f"{name} order budget of {cap} is spent")
                return window[0] + span - now
        return 0.0

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited. Raises BudgetExhausted (nothing taken)."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 0:
                    for _, _, window in self._windows:
                        window.append(now)
                    return waited
            self._sleep(wait)
            waited += wait


def limits_for(broker: str) -> Limits:
    """The engine's write budget for an account at `broker` (its capabilities' `write_budget`);
    the default budget for a broker kind without a capability record."""
    try:
        return Limits.from_budget(capabilities_for(broker).write_budget)
    except UnknownCapabilities:
        return Limits()


class LimiterRegistry:
    """One limiter per account id, created on first use: with `limits` when given (tests,
    benchmarks), else with the budget of the account's broker."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits
        self._limiters: dict[int, RateLimiter] = {}
        self._lock = threading.Lock()

    def for_account(self, account_id: int, broker: str = "") -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(account_id)
            if limiter is None:
                limits = self.limits or (limits_for(broker) if broker else Limits())
                limiter = self._limiters[account_id] = RateLimiter(limits)
            return limiter
