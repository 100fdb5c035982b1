"""DESIGN §3.6 end to end: run_tick on the paper exchange, master and five children."""

from __future__ import annotations

from decimal import Decimal

import pytest

from replication.models import Allocation, AllocationKind, MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from tests.engine_helpers import CALL, FUT, build_desk

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk():
    return build_desk()


@pytest.fixture
def orch():
    o = Orchestrator(holder="test-orchestrator", workers=0)
    yield o
    o.close()


def test_engine_worked_example_entry_partial_exit_full_exit(desk, orch):
    first = orch.run_tick()  # baseline: master snapshot with U = 0
    assert first.leader and not first.errors

    desk.place("BUY", FUT, 150)
    result = orch.run_tick()
    assert result.errors == []
    alloc = Allocation.objects.get(kind=AllocationKind.OPEN)
    assert alloc.fraction == Decimal("0.3")
    assert alloc.attributed_margin == Decimal("300000.00")
    assert alloc.margin_source == "delta_u"
    assert desk.positions(FUT) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}
    c3 = OrderMapping.objects.get(child=desk.children["C3"], allocation=alloc)
    assert c3.status == MappingStatus.SKIPPED
    assert c3.reason == "needs ₹1,50,000.00 for one lot, share is ₹75,000.00"
    assert {m.status for m in OrderMapping.objects.filter(quantity__gt=0)} == {MappingStatus.OPEN}
    orch.run_tick()  # the next tick's follow-up records the fills
    assert all(m.status == MappingStatus.FILLED for m in OrderMapping.objects.filter(quantity__gt=0))

    desk.place("SELL", FUT, 75)  # partial exit, r = 0.5
    orch.run_tick()
    close = Allocation.objects.get(kind=AllocationKind.CLOSE)
    assert close.exit_ratio == Decimal("0.5")
    assert desk.positions(FUT) == {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}

    desk.place("SELL", FUT, 75)  # master flat: everyone flat
    orch.run_tick()
    assert desk.positions(FUT) == {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}
    assert Allocation.objects.filter(kind=AllocationKind.CLOSE).count() == 2


def test_engine_worked_example_hedge_keeps_shape_buy_leg_first(desk, orch):
    orch.run_tick()
    desk.place("BUY", CALL, 150)
    desk.place("SELL", FUT, 150)
    result = orch.run_tick()
    assert result.errors == []
    legs = list(Allocation.objects.filter(kind=AllocationKind.OPEN).order_by("id"))
    assert [(a.tradingsymbol, a.side, a.unit_lots) for a in legs] == [(CALL, "BUY", 1), (FUT, "SELL", 1)]
    assert legs[0].fraction == Decimal("0.12")
    assert desk.positions(CALL) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}
    assert desk.positions(FUT) == {"C1": -75, "C2": -300, "C3": 0, "C4": -75, "C5": -75}
    for name in ("C1", "C2", "C4", "C5"):
        buy, sell = (OrderMapping.objects.get(child=desk.children[name], allocation=a) for a in legs)
        assert buy.wave == 0 and sell.wave == 1
        assert buy.acked_at <= sell.acked_at
    assert (
        not OrderMapping.objects.filter(child=desk.children["C3"])
        .exclude(status=MappingStatus.SKIPPED)
        .exists()
    )
