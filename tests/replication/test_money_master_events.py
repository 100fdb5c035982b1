"""Issue 11, master events: a promoted master's own book, the position an exit ratio is taken
against, and a master LIMIT turned MARKET.

Driven through `Orchestrator.run_tick()` on the paper desk of DESIGN §3.6; the assertions are on
what reaches the child brokers (`PaperOrder`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.services.lifecycle import account_promote_master
from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_order_modify, paper_order_place
from replication.models import Allocation, AllocationKind, MasterPosition
from replication.orchestrator import Orchestrator
from tests.engine_helpers import FUT
from tests.faulty_broker import Faults, FaultyBroker, install

pytestmark = pytest.mark.django_db


def _orders_of(user_id: str) -> list[PaperOrder]:
    return list(PaperOrder.objects.filter(account__user_id=user_id).order_by("id"))


def _buy_two_lots(desk, orch) -> None:
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()  # fills recorded


def test_money_promoted_child_does_not_replay_the_engines_orders(desk, orch):
    """Issue 11 defect 16: a child holding engine-placed orders is promoted to master; its book
    (orders tagged by the engine) is not taken as new master events: no child order is placed."""
    _buy_two_lots(desk, orch)
    assert any(o.tag for o in _orders_of("C2"))  # the engine's orders, tagged, in C2's book
    placed = PaperOrder.objects.count()
    account_promote_master(account=desk.children["C2"], actor="staff")
    orch.run_tick()
    orch.run_tick()
    assert PaperOrder.objects.count() == placed
    assert not Allocation.objects.filter(master=desk.children["C2"]).exists()


def test_money_promoted_childs_own_earlier_orders_are_known_not_new(desk, orch):
    """Issue 11 defect 16: orders the account placed itself before it became master are its
    known book, not master events; an order it places after the promotion is replicated."""
    orch.run_tick()
    desk.place("BUY", FUT, 75, user="C2")  # the client's own trade, while still a child
    account_promote_master(account=desk.children["C2"], actor="staff")
    placed = PaperOrder.objects.count()
    orch.run_tick()
    assert PaperOrder.objects.count() == placed  # nothing copied from the earlier book
    desk.place("BUY", FUT, 150, user="C2")  # a real master trade after the promotion
    orch.run_tick()
    assert PaperOrder.objects.count() > placed
    assert Allocation.objects.get(master=desk.children["C2"]).master_quantity == 150


class RacyBroker(FaultyBroker):
    """The master's order book is read, then a hook runs: a fill landing just after the book
    was read, before anything else the tick reads (the positions)."""

    after_orders: list[Callable[[], None]]

    def orders(self):  # type: ignore[no-untyped-def]
        book = super().orders()
        if self.user_id == "MASTER" and self.after_orders:
            self.after_orders.pop(0)()
        return book


@pytest.fixture
def racy(faults: Faults) -> Iterator[list[Callable[[], None]]]:
    hooks: list[Callable[[], None]] = []
    restore = install(faults, broker_class=RacyBroker, after_orders=hooks)
    yield hooks
    restore()


def _sell_master(qty: int) -> None:
    paper_order_place(
        user_id="MASTER",
        exchange="NFO",
        tradingsymbol=FUT,
        side="SELL",
        quantity=qty,
        product="NRML",
        order_type="MARKET",
    )


def test_money_exit_ratio_from_the_position_before_the_book(desk, racy):
    """Issue 11 defect 17: the master holds 3 lots and sells 1; a second sell fills just after
    the orders read (before the positions read). The first exit is sized r = 1/3 (not 1/2): C2 with 6 lots
    sells 2, then 2 more for the second sell, and holds 2 lots, a third of its 6 like the master."""
    orch = Orchestrator(holder="test-orchestrator", workers=0)
    try:
        orch.run_tick()
        desk.place("BUY", FUT, 225)  # 3 lots; C2 (₹20 lakh) gets 6
        orch.run_tick()
        orch.run_tick()
        assert desk.positions(FUT)["C2"] == 450
        desk.place("SELL", FUT, 75)
        racy.append(lambda: _sell_master(75))  # lands just after the book was read
        orch.run_tick()
        sells = [o.quantity for o in _orders_of("C2") if o.side == "SELL"]
        assert sells == [150]  # r = 75 / 225
        first = Allocation.objects.get(kind=AllocationKind.CLOSE)
        assert first.master_position_before == 225
        orch.run_tick()  # the second sell is in the book now: r = 75 / 150
        orch.run_tick()
        assert [o.quantity for o in _orders_of("C2") if o.side == "SELL"] == [150, 150]
        assert desk.positions(FUT)["C2"] == 150
    finally:
        orch.close()


def test_money_master_limit_turned_market_turns_the_children_market(desk, orch):
    """Issue 11 defect 8: the master modifies its resting LIMIT to MARKET and is filled; the
    children's resting LIMITs are modified to MARKET too (and fill), not left resting."""
    orch.run_tick()
    oid = desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19900"))
    orch.run_tick()
    assert PaperOrder.objects.get(account__user_id="C2").status == "OPEN"
    paper_order_modify(user_id="MASTER", order_id=oid, order_type="MARKET")
    assert PaperOrder.objects.get(order_id=oid).status == "COMPLETE"
    orch.run_tick()
    children = PaperOrder.objects.exclude(account__user_id="MASTER")
    assert {(o.order_type, o.status) for o in children} == {("MARKET", "COMPLETE")}
    assert desk.positions(FUT) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}


def test_money_stored_position_from_an_earlier_day_is_read_afresh(desk, orch):
    """Issue 11 defect 17: the stored position holds for the trading day it was written on. One
    from an earlier day (the engine down across a day: fills no book showed it) is not trusted:
    the day's first event reads the positions again, and the exit ratio is right (r = 1/3)."""
    orch.run_tick()
    desk.place("BUY", FUT, 225)
    orch.run_tick()
    orch.run_tick()
    yesterday = timezone.now() - timedelta(days=1)
    MasterPosition.objects.filter(account=desk.master).update(quantity=450, updated_at=yesterday)
    desk.place("SELL", FUT, 75)
    orch.run_tick()
    assert [o.quantity for o in _orders_of("C2") if o.side == "SELL"] == [150]  # r = 75 / 225
    assert MasterPosition.objects.get(account=desk.master).quantity == 150
