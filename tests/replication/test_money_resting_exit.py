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

from accounts.models import AccountStatus
from accounts.services.lifecycle import account_set_status
from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_order_cancel, paper_order_modify
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


def _entered_with_a_stop(desk, orch) -> str:
    """The master holds 2 lots with a stop-loss on both, placed a tick after the entry: every
    child holds its entry and has a resting copy of the stop-loss."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    settle(orch, 3)
    stop = desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    settle(orch, 3)
    assert desk.positions(FUT) == HELD
    resting = PaperOrder.objects.filter(order_type="SL-M", status="TRIGGER PENDING")
    assert sorted(resting.values_list("account__user_id", "quantity")) == [
        ("C1", 75),
        ("C2", 300),
        ("C4", 75),
        ("C5", 75),
        ("MASTER", 150),
    ]
    return stop


def test_master_books_half_at_market_while_its_stop_loss_rests(desk, orch):
    """The master sells 1 of its 2 lots at MARKET and keeps its stop-loss: every child reduces by
    the same ratio now (§3.4), whatever exits it has resting on a stop that has not triggered."""
    _entered_with_a_stop(desk, orch)
    desk.place("SELL", FUT, 75)
    settle(orch)
    assert desk.positions(FUT) == {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}


def test_a_childs_resting_stop_copy_never_exceeds_what_it_holds(desk, orch):
    """After the half exit, a child's copy of the stop-loss is cut to what it still holds (none
    for the 1-lot children): when the stop triggers no child goes short, and all end flat."""
    _entered_with_a_stop(desk, orch)
    desk.place("SELL", FUT, 75)
    settle(orch)
    resting = PaperOrder.objects.filter(
        order_type="SL-M", status="TRIGGER PENDING", account__user_id__startswith="C"
    )
    assert sorted(resting.values_list("account__user_id", "quantity")) == [("C2", 150)]
    set_price(FUT, "19400")
    orch.run_tick()
    assert min(desk.positions(FUT).values()) == 0  # nobody short, not even for a tick
    desk.place("BUY", FUT, 75)  # the master (short 1 lot after its stop) closes
    settle(orch)
    assert desk.positions(FUT) == FLAT


def test_stop_loss_sized_to_cross_zero_fills_as_a_close_after_the_master_added(desk, orch):
    """The master is short 1 lot and rests a BUY stop-loss of 3 (it would close 1 and open 2
    long), and a SELL LIMIT of 2 more. The price moves: the LIMIT fills first (short 3), then the
    stop-loss closes all 3: the master is flat, and so is every child (the stop-loss's copies
    that would have opened a long position entitle nothing: it opened nothing at the master)."""
    orch.run_tick()
    desk.place("SELL", FUT, 75)
    settle(orch, 3)
    desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20150"))
    desk.place("BUY", FUT, 225, order_type="SL-M", trigger=Decimal("20150"))
    settle(orch, 3)
    set_price(FUT, "20150")
    settle(orch)
    assert not PaperOrder.objects.filter(account__user_id="MASTER", status__in=("OPEN", "TRIGGER PENDING"))
    assert desk.positions(FUT) == FLAT


def test_stop_loss_copy_that_would_open_entitles_nothing_when_the_master_closed_with_it(desk, orch):
    """As above, with C2 halted while the master went short (it holds nothing there) and resumed
    before the stop-loss: C2's only copy is of the part that would open a long. The stop-loss
    fills as a close of all the master held (flat), so C2's filled copy entitles it to nothing
    and is closed again: C2 ends flat with the master."""
    c2 = desk.children["C2"]
    orch.run_tick()
    account_set_status(account=c2, status=AccountStatus.HALTED, actor="desk", reason="checking")
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20150"))
    settle(orch, 2)
    account_set_status(account=c2, status=AccountStatus.ACTIVE, actor="desk", reason="checked")
    desk.place("BUY", FUT, 225, order_type="SL-M", trigger=Decimal("20150"))
    settle(orch, 3)
    assert desk.positions(FUT)["C2"] == 0
    set_price(FUT, "20150")
    settle(orch)
    assert not PaperOrder.objects.filter(account__user_id="MASTER", status__in=("OPEN", "TRIGGER PENDING"))
    assert desk.positions(FUT) == FLAT


def test_a_resting_stop_loss_on_the_whole_position_leaves_resting_entries_alone(desk, orch):
    """The master is short 1 lot with a SELL LIMIT of 2 more resting, then rests a stop-loss on
    its 1 lot: it has not gone flat, so the children's copies of its LIMIT entry stay; when the
    LIMIT fills they follow it (C2: 2 lots short, then 6)."""
    orch.run_tick()
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20150"))
    settle(orch, 2)
    copies = PaperOrder.objects.filter(order_type="LIMIT", status="OPEN", account__user_id__startswith="C")
    assert copies.count() == 4
    desk.place("BUY", FUT, 75, order_type="SL-M", trigger=Decimal("20300"))
    settle(orch, 2)
    assert copies.count() == 4
    set_price(FUT, "20150")  # the LIMIT fills; the stop-loss does not trigger
    settle(orch)
    assert desk.positions(FUT)["C2"] == -450


def test_trailing_the_stop_loss_after_a_partial_booking_keeps_the_copy_cut(desk, orch):
    """Found in review: after the half exit the master trails its stop-loss (trigger only). C2's
    copy follows the new trigger at its cut size, and never grows back to the whole position (it
    would take C2 short when the stop triggers)."""
    stop = _entered_with_a_stop(desk, orch)
    desk.place("SELL", FUT, 75)
    settle(orch)
    paper_order_modify(user_id="MASTER", order_id=stop, trigger_price=Decimal("19600"))
    settle(orch, 4)
    copies = PaperOrder.objects.filter(
        order_type="SL-M", status="TRIGGER PENDING", account__user_id__startswith="C"
    )
    assert list(copies.values_list("account__user_id", "quantity", "trigger_price")) == [
        ("C2", 150, Decimal("19600"))
    ]
    set_price(FUT, "19550")
    orch.run_tick()
    assert min(desk.positions(FUT).values()) == 0


def test_a_resting_close_that_grew_and_crossed_zero_leaves_no_child_on_the_old_side(desk, orch):
    """Found by the long run: the master is short 1 lot with a BUY LIMIT of 1 lot resting (a
    close), sells 1 more at MARKET (short 2), then raises its LIMIT to 3 lots. It fills: the master
    closed its 2 lots short and is long 1. No child stays short (the close takes all the master
    held when it filled, not the 1 lot it was sized against)."""
    orch.run_tick()
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    limit = desk.place("BUY", FUT, 75, order_type="LIMIT", price=Decimal("19850"))
    settle(orch, 2)
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    paper_order_modify(user_id="MASTER", order_id=limit, quantity=225)
    settle(orch, 2)
    set_price(FUT, "19850")
    settle(orch)
    assert PaperOrder.objects.get(order_id=limit).status == "COMPLETE"
    assert min(desk.positions(FUT).values()) >= 0
