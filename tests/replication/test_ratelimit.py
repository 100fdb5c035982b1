"""Per-account order-write limiter: below Kite's 10/s, 400/min, 5,000/day."""

from __future__ import annotations

import threading

import pytest

from replication.ratelimit import DailyBudgetExhausted, LimiterRegistry, Limits, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_ratelimit_per_second_window_makes_the_ninth_write_wait():
    clock = FakeClock()
    limiter = RateLimiter(
        Limits(per_second=8, per_minute=1000, per_day=10_000), clock=clock, sleep=clock.sleep
    )
    waits = [limiter.acquire() for _ in range(9)]
    assert waits[:8] == [0.0] * 8
    assert waits[8] == pytest.approx(1.0)
    assert clock.now == pytest.approx(1001.0)


def test_ratelimit_per_minute_window():
    clock = FakeClock()
    limiter = RateLimiter(
        Limits(per_second=100, per_minute=5, per_day=10_000), clock=clock, sleep=clock.sleep
    )
    for _ in range(5):
        assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(60.0)


def test_ratelimit_daily_budget_raises_instead_of_waiting_a_day():
    clock = FakeClock()
    limiter = RateLimiter(Limits(per_second=100, per_minute=100, per_day=3), clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire()
    with pytest.raises(DailyBudgetExhausted):
        limiter.acquire()


def test_ratelimit_default_limits_stay_below_kite():
    limits = Limits()
    assert limits.per_second < 10 and limits.per_minute < 400 and limits.per_day < 5000


def test_ratelimit_registry_one_limiter_per_account_thread_safe():
    registry = LimiterRegistry()
    seen: list[RateLimiter] = []

    def grab() -> None:
        seen.append(registry.for_account(7))

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(x) for x in seen}) == 1
    assert registry.for_account(8) is not seen[0]


def test_ratelimit_concurrent_acquires_never_exceed_the_window():
    clock = FakeClock()
    lock = threading.Lock()
    limiter = RateLimiter(
        Limits(per_second=8, per_minute=1000, per_day=10_000),
        clock=clock,
        sleep=lambda s: (lock.acquire(), clock.sleep(s), lock.release()),
    )
    stamps: list[float] = []

    def send() -> None:
        limiter.acquire()
        stamps.append(clock.now)

    threads = [threading.Thread(target=send) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    for i in range(len(stamps) - 8):
        assert stamps[i + 8] - stamps[i] >= 1.0 - 1e-9
