"""The shared request budgets (brokers.budget) as each adapter spends them: its own limits, its own
words when a window is spent, one budget per account for the whole process."""

from __future__ import annotations

from brokers.alice import budget as alice
from brokers.angel import budget as angel
from brokers.budget import SlidingBudget
from brokers.dhan import budget as dhan
from brokers.errors import RateLimited


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _spend_the_minute(budget: SlidingBudget) -> RateLimited:
    for _ in range(10_000):
        try:
            budget.take()
        except RateLimited as refused:
            return refused
    raise AssertionError("the budget never refused")


def test_each_adapter_refuses_a_spent_minute_in_its_own_words():
    clock = FakeClock()
    angel_refusal = _spend_the_minute(angel.WriteBudget(clock=clock, sleep=clock.sleep))
    assert str(angel_refusal).startswith("Angel One's order budget of 500 per 60 s is spent for this client")
    assert "next write in" in str(angel_refusal)

    clock = FakeClock()
    dhan_refusal = _spend_the_minute(dhan.WriteBudget(clock=clock, sleep=clock.sleep))
    assert str(dhan_refusal).startswith("Dhan's order budget of 200 per 60 s is spent for this client")

    clock = FakeClock()
    other = alice.Budget(alice.OTHER_CALLS, what="request", clock=clock, sleep=clock.sleep)
    alice_refusal = _spend_the_minute(other)
    assert str(alice_refusal).startswith("Alice Blue's request budget of 1800 per 900 s is spent")
    assert "next call in" in str(alice_refusal)
    for refusal in (angel_refusal, dhan_refusal, alice_refusal):
        assert refusal.code == "budget_spent" and not refusal.permanent


def test_the_second_is_waited_out_not_refused():
    clock = FakeClock()
    budget = dhan.WriteBudget(((1.0, 2), (60.0, 100)), clock=clock, sleep=clock.sleep)
    for _ in range(6):
        budget.take()
    assert clock.now >= 2.0 and budget.used(60.0) == 6 and budget.used(1.0) <= 2


def test_budgets_are_one_per_account_until_forgotten():
    angel.forget_budgets()
    assert angel.budgets_for("C1") is angel.budgets_for("C1")
    assert angel.budgets_for("C1") is not angel.budgets_for("C2")
    first = angel.budgets_for("C1")
    angel.forget_budgets()
    assert angel.budgets_for("C1") is not first

    mine = dhan.WriteBudget(((1.0, 1),))
    dhan.set_budget("D1", mine)
    assert dhan.budget_for("D1") is mine
    dhan.forget_budgets()
    assert dhan.budget_for("D1") is not mine

    alice.forget_budgets()
    assert alice.budgets_for("U1").writes.windows == alice.ORDER_WRITES
    assert alice.budgets_for("U1").other.windows == alice.OTHER_CALLS
    alice.forget_budgets()
