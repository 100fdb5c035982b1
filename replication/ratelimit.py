"""Per-account order-write rate limiter, kept below Kite's limits (10/s, 400/min, 5,000/day).

Thread-safe sliding windows. `acquire` blocks until a write is allowed (or raises when the day's
budget is spent); reads do not use it. One limiter per account per process; in queue mode each
worker owns its shard's limiters (DESIGN §7).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    per_second: int = 8
    per_minute: int = 180
    per_day: int = 4500


class DailyBudgetExhausted(Exception):
    pass


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
        self._second: deque[float] = deque()
        self._minute: deque[float] = deque()
        self._day: deque[float] = deque()
        self._lock = threading.Lock()

    def _wait_needed(self, now: float) -> float:
        for window, span, cap in (
            (self._second, 1.0, self.limits.per_second),
            (self._minute, 60.0, self.limits.per_minute),
        ):
            while window and window[0] <= now - span:
                window.popleft()
            if len(window) >= cap:
                return window[0] + span - now
        while self._day and self._day[0] <= now - 86400.0:
            self._day.popleft()
        if len(self._day) >= self.limits.per_day:
            raise DailyBudgetExhausted(f"daily order budget of {self.limits.per_day} is spent")
        return 0.0

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 0:
                    for window in (self._second, self._minute, self._day):
                        window.append(now)
                    return waited
            self._sleep(wait)
            waited += wait


class LimiterRegistry:
    """One limiter per account id, created on first use."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._limiters: dict[int, RateLimiter] = {}
        self._lock = threading.Lock()

    def for_account(self, account_id: int) -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(account_id)
            if limiter is None:
                limiter = self._limiters[account_id] = RateLimiter(self.limits)
            return limiter
