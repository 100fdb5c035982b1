"""The opening group asks the master's broker only the margin calculator its capabilities list."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest

from brokers.capabilities import PAPER, MarginCalculator, MarginCalculatorKind, register, unregister
from lab.demo import MASTER
from replication.models import Allocation, AllocationKind
from tests.engine_helpers import CALL, FUT, build_desk
from tests.faulty_broker import Faults, FaultyBroker, install

pytestmark = pytest.mark.django_db


@dataclass
class Asked:
    baskets: list[int] = field(default_factory=list)  # legs of each basket_margin call
    orders: list[int] = field(default_factory=list)  # legs of each order_margins call


class CountingBroker(FaultyBroker):
    asked: Asked

    def basket_margin(self, reqs):  # type: ignore[no-untyped-def]
        if self.user_id == MASTER:
            self.asked.baskets.append(len(reqs))
        return super().basket_margin(reqs)

    def order_margins(self, reqs):  # type: ignore[no-untyped-def]
        if self.user_id == MASTER:
            self.asked.orders.append(len(reqs))
        return super().order_margins(reqs)


@pytest.fixture
def asked() -> Iterator[Asked]:
    recorded = Asked()
    restore = install(Faults(), broker_class=CountingBroker, asked=recorded)
    yield recorded
    restore()


def _hedge(orch) -> list[Allocation]:
    desk = build_desk()
    orch.run_tick()
    desk.place("BUY", CALL, 150)
    desk.place("SELL", FUT, 150)
    result = orch.run_tick()
    assert result.errors == []
    return list(Allocation.objects.filter(kind=AllocationKind.OPEN).order_by("id"))


def test_a_hedge_asks_the_basket_where_the_broker_has_one(asked, orch):
    legs = _hedge(orch)
    assert asked.baskets == [2]
    assert len(legs) == 2


@pytest.mark.parametrize(
    ("calculator", "baskets", "orders"),
    [
        (MarginCalculator(MarginCalculatorKind.ORDER_ONLY), [], [2]),
        (MarginCalculator(MarginCalculatorKind.BASKET_HEDGED, max_legs=1), [], [2]),
        (MarginCalculator(MarginCalculatorKind.NONE), [], []),
    ],
)
def test_a_hedge_asks_nothing_the_brokers_calculator_cannot_answer(asked, orch, calculator, baskets, orders):
    register(replace(PAPER, margin=calculator))
    try:
        legs = _hedge(orch)
    finally:
        unregister("paper")
    assert asked.baskets == baskets
    assert asked.orders == orders
    assert [(a.tradingsymbol, a.side) for a in legs] == [(CALL, "BUY"), (FUT, "SELL")]
    assert all(a.fraction > 0 for a in legs)
