"""Each child's order writes spend its broker's budget for every window (capabilities, not names)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from brokers.capabilities import ANGEL, KITE, PAPER, RateBudget, register, unregister
from replication.models import MappingStatus, OrderMapping
from replication.ratelimit import BudgetExhausted, LimiterRegistry, Limits, RateLimiter, limits_for
from tests.engine_helpers import FUT


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_each_broker_gets_its_own_budget():
    assert limits_for("kite") == Limits()  # unchanged: 8/s, 180/min, 4,500/day
    assert limits_for("paper") == Limits()
    angel = limits_for("angel")
    assert (angel.per_second, angel.per_minute, angel.per_hour, angel.per_day) == (8, 180, 900, None)
    assert angel.per_hour is not None and ANGEL.write_limits.per_hour is not None
    assert angel.per_hour < ANGEL.write_limits.per_hour
    assert KITE.write_budget.per_day == Limits().per_day
    registry = LimiterRegistry()
    assert registry.for_account(1, "angel").limits == angel
    assert registry.for_account(2, "kite").limits == Limits()


def test_the_hourly_budget_raises_instead_of_waiting_an_hour():
    clock = FakeClock()
    limiter = RateLimiter(
        Limits(per_second=100, per_minute=1000, per_day=None, per_hour=5), clock=clock, sleep=clock.sleep
    )
    for _ in range(5):
        limiter.acquire()
    with pytest.raises(BudgetExhausted, match="hourly order budget of 5"):
        limiter.acquire()
    clock.now += 3600
    assert limiter.acquire() == 0.0


def test_angel_budget_holds_under_a_burst():
    """A burst of 1,200 writes: at most 900 in any hour, 180 in any minute, 8 in any second."""
    clock = FakeClock()
    limiter = RateLimiter(limits_for("angel"), clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(1200):
        try:
            limiter.acquire()
        except BudgetExhausted:
            break
        stamps.append(clock.now)
    assert len(stamps) == 900
    for i in range(len(stamps) - 180):
        assert stamps[i + 180] - stamps[i] >= 60.0 - 1e-9
    for i in range(len(stamps) - 8):
        assert stamps[i + 8] - stamps[i] >= 1.0 - 1e-9


@pytest.mark.django_db
def test_a_tick_spends_the_childs_broker_budget(desk, orch):
    """The paper broker's budget is set to nothing this hour: every child's entry stays planned,
    with the reason, and nothing reaches the broker."""
    register(replace(PAPER, write_budget=RateBudget(per_second=8, per_hour=0)))
    try:
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
    finally:
        unregister("paper")
    sent = OrderMapping.objects.exclude(quantity=0)
    assert sent.exists()
    for m in sent:
        assert m.status == MappingStatus.PLANNED
        assert m.reason_code == "rate_limited"
        assert "hourly order budget of 0" in m.reason
    assert desk.positions(FUT) == {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}
