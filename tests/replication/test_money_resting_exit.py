"""A resting master exit (a stop-loss, a target) is followed, never front-run (DESIGN §3.4, §3.7).

The master's entry and its stop-loss (and target) go in the same tick: the children's entries are
still in flight when the exits are sized, so no child gets a resting mirror of them. The children
must keep what they hold until the master's exit fills: an owed exit is owed for what the master
has done, not for what it has resting. Driven through `run_tick` on the §3.6 paper desk; asserted
at the paper exchange.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_order_cancel
from replication.reconciliation import Grade, reconcile
from tests.engine_helpers import FUT, set_price

pytestmark = pytest.mark.django_db

HELD = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}  # the §3.6 desk's entry for 2 lots
FLAT = dict.fromkeys(HELD, 0)


def settle(orch, ticks: int = 5) -> None:
    for _ in range(ticks):
        orch.run_tick()


def child_sells():
    return list(
        PaperOrder.objects.exclude(account__user_id="MASTER")
        .filter(side="SELL")
        .values_list("account__user_id", "order_type", "quantity", "status")
    )


def test_stop_loss_placed_with_the_entry_is_not_front_run(desk, orch):
    orch.run_tick()  # the master's baseline
    desk.place("BUY", FUT, 150)
    stop = desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    settle(orch)
    assert desk.positions(FUT) == HELD
    assert not [s for s in child_sells() if s[3] == "COMPLETE"]

    paper_order_cancel(user_id="MASTER", order_id=stop)  # the master keeps its position
    settle(orch)
    assert desk.positions(FUT) == HELD

    desk.place("SELL", FUT, 150)  # and closes it
    settle(orch)
    assert desk.positions(FUT) == FLAT


def test_stop_loss_and_target_placed_with_the_entry_then_the_target_fills(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    stop = desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20500"))
    settle(orch)
    assert desk.positions(FUT) == HELD

    set_price(FUT, "20600")  # the target fills; the master cancels its stop-loss
    paper_order_cancel(user_id="MASTER", order_id=stop)
    settle(orch)
    assert desk.positions(FUT) == FLAT


def test_stop_loss_placed_with_the_entry_then_it_triggers(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    settle(orch)
    assert desk.positions(FUT) == HELD

    set_price(FUT, "19400")  # the stop-loss triggers and fills
    settle(orch)
    assert desk.positions(FUT) == FLAT


def test_partly_closed_then_a_stop_loss_on_the_rest_is_not_front_run(desk, orch):
    """The master holds 2 lots and, in one tick, sells 1 and puts a stop-loss on the other: the
    children exit half now and keep the rest until the stop-loss fills."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    settle(orch, 3)
    assert desk.positions(FUT) == HELD
    desk.place("SELL", FUT, 75)
    desk.place("SELL", FUT, 75, order_type="SL-M", trigger=Decimal("19500"))
    settle(orch)
    half = {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}  # 1-lot children round their half up
    assert desk.positions(FUT) == half
    set_price(FUT, "19400")
    settle(orch)
    assert desk.positions(FUT) == FLAT


def test_reconciliation_does_not_flag_children_under_a_resting_master_stop_loss(desk, orch):
    """Staff see no drift while the master's stop-loss rests: nothing to correct by hand (a
    "major" grade here would invite a corrective sell ahead of the master)."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    settle(orch)
    grades = {d.child_id: (d.grade, d.entitled, d.expected) for d in reconcile()}
    assert {c: grades[desk.children[c].pk] for c in ("C1", "C2", "C4", "C5")} == {
        c: (Grade.OK, HELD[c], HELD[c]) for c in ("C1", "C2", "C4", "C5")
    }

    set_price(FUT, "19400")  # the stop-loss fills at the master
    orch.run_tick()  # the engine records it (its children's exits go out in this tick)
    settle(orch)
    assert {d.grade for d in reconcile() if d.tradingsymbol == FUT} <= {Grade.OK}
