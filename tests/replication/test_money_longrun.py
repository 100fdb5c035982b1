"""Issue 11: paths the long money state machine (`tests/test_money_stateful.py`, `make test-slow`)
found, each cut down to a deterministic run of the engine on the paper desk of DESIGN §3.6,
asserting what the child brokers hold (the paper exchange's own tables)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_order_cancel, paper_order_modify
from tests.engine_helpers import FUT, set_price

pytestmark = pytest.mark.django_db

FLAT = {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}
HELD = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}  # after the master's BUY 2 lots (§3.6)


def settle(orch, ticks: int = 4) -> None:
    for _ in range(ticks):
        orch.run_tick()


def entry(desk, orch) -> None:
    """The worked example's first step: the master BUYs 2 lots; every child fills."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    settle(orch, 2)
    assert desk.positions(FUT) == HELD


def resting(user: str | None = None):
    qs = PaperOrder.objects.exclude(account__user_id="MASTER").filter(status__in=("OPEN", "TRIGGER PENDING"))
    return qs.filter(account__user_id=user) if user else qs


def test_money_exit_limit_sent_late_does_not_leave_the_child_holding_after_the_master_is_flat(
    desk, orch, faults
):
    """Issue 11 §1, an exit is owed until done (found by the long state machine): the master exits
    with a LIMIT above the market. C2's mirror times out unplaced; the price touches the limit and
    the master is flat; the price falls back. The engine proves C2's order absent and sends it
    again, still at the master's limit, now far from the market: it rests, and the convergence
    stage took it as the exit working, so C2 stayed long 4 lots for ever although the master was
    flat. Once the master is flat, a child's resting exit mirror of a filled master order goes
    MARKET (DESIGN §3.4, §3.7), whatever its pending policy; every child ends flat."""
    entry(desk, orch)
    desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20150"))
    faults.unknown_not_placed.add("C2")
    orch.run_tick()  # mirrors: C2's place times out, nothing placed
    set_price(FUT, "20150")  # the master's exit fills; so do the other children's mirrors
    set_price(FUT, "20000")
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT) == FLAT
    assert not resting().exists()
    tags = list(PaperOrder.objects.filter(account__user_id="C2", side="SELL").values_list("tag", flat=True))
    assert len(tags) == len(set(tags))  # C2's exit was never sent twice


def test_money_exit_limit_left_working_while_the_master_still_holds_keeps_the_leave_policy(desk, orch):
    """Issue 11 §1 (the boundary of the fix above): the master exits half at a LIMIT that fills;
    C2's mirror lags at its broker. The master still holds, so nothing forces C2's order MARKET
    (policy `leave`, DESIGN §3.5): it keeps working at its own price."""
    entry(desk, orch)
    desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20150"))
    orch.run_tick()
    c2 = PaperOrder.objects.get(account__user_id="C2", side="SELL")
    paper_order_modify(user_id="C2", order_id=c2.order_id, price=Decimal("20300"))  # lags
    set_price(FUT, "20150")
    settle(orch, 4)
    assert desk.positions(FUT)["C2"] == 300
    c2.refresh_from_db()
    assert (c2.status, c2.order_type) == ("OPEN", "LIMIT")


def test_money_both_master_exit_orders_cancelled_cancel_the_childs_aggregated_mirror(desk, orch):
    """Issue 11 §1, a stale mirror never stands in for an exit (found by the long state machine):
    the master places two SELL LIMITs at one price in one tick (one closing event, one mirror per
    child), then cancels them in two ticks. The second cancel counted the first cancelled order at
    its full quantity (the engine's record of it, not what filled), so the children's mirrors were
    neither cancelled nor left for the stale-mirror sweep, and rested with nothing at the master:
    at the limit price they sold what the master still held. Every mirror is cancelled and the
    price reaching the limit sells nothing (C2 keeps its 4 lots; the 1-lot children's mirrors were
    cancelled at the first cancel and their half exit, owed by the §3.4 rule, went out then)."""
    entry(desk, orch)
    first = desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20150"))
    second = desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20150"))
    orch.run_tick()
    assert resting().count() == 4  # one aggregated mirror per child holding
    paper_order_cancel(user_id="MASTER", order_id=first)
    orch.run_tick()
    paper_order_cancel(user_id="MASTER", order_id=second)
    settle(orch, 3)
    assert not resting().exists()
    held = desk.positions(FUT)
    assert held["C2"] == 300
    set_price(FUT, "20150")
    settle(orch, 3)
    assert desk.positions(FUT) == held


def test_money_entry_cancelled_unfilled_at_the_master_entitles_a_late_child_fill_to_nothing(desk, orch):
    """Issue 11 §3.7, a failed entry adds nothing (found by the long state machine): the master
    SELLs 2 lots at a LIMIT above the market; the children's mirrors rest. C2 is halted, so when
    the master cancels its order unfilled C2's cancel is held back. The price then reaches the
    limit: C2's mirror fills while the master never sold. The entitlement replay counted that fill
    as an entry, so after the resume C2 stayed short 4 lots with the master flat for ever. An entry
    whose master orders all ended unfilled entitles nothing: C2 buys back and every child is flat."""
    from accounts.models import Account, AccountStatus

    orch.run_tick()
    order = desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20150"))
    settle(orch, 2)
    assert resting().filter(side="SELL").count() == 4
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.HALTED)
    paper_order_cancel(user_id="MASTER", order_id=order)
    settle(orch, 2)
    assert resting("C2").exists()  # held back: C2 is halted
    set_price(FUT, "20150")
    assert desk.positions(FUT)["C2"] == -300  # filled at its broker, the master never sold
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.ACTIVE)
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT) == FLAT
    assert not resting().exists()


def test_money_entry_partly_filled_at_the_master_entitles_the_child_to_its_share(desk, orch):
    """Issue 11 §3.7 (the boundary of the fix above): the master SELLs 1 lot at 20100 and 1 lot at
    20200 in one tick. The first fills; the master cancels the second. C2 is halted, so its cancel
    is held back, and its mirror of the second order fills when the price gets there. C2 is
    entitled to its share of what the master sold (2 of its 4 lots); the rest is bought back after
    the resume."""
    from accounts.models import Account, AccountStatus

    orch.run_tick()
    desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20100"))
    second = desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20200"))
    settle(orch, 2)
    set_price(FUT, "20100")
    settle(orch, 2)
    assert desk.positions(FUT)["C2"] == -150
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.HALTED)
    paper_order_cancel(user_id="MASTER", order_id=second)
    settle(orch, 2)
    set_price(FUT, "20200")
    assert desk.positions(FUT)["C2"] == -300  # filled at its broker, the master never sold that lot
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.ACTIVE)
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT)["C2"] == -150
    assert not resting().exists()


def test_money_exit_held_by_an_engine_halt_after_a_dry_run_goes_out_once_both_are_lifted(desk, orch):
    """Issue 11 §3.7, an exit is owed until done (found by the long state machine): the master
    exits everything while the engine is in dry run, so the children's exits are only planned and
    their entitlement rows settle "by dry runs". The engine is then halted: the rows took the halt's
    hold code but stayed settled, so once the halt and the dry run were lifted no tick looked at them
    again until the slow sweep, and the children stayed long with the master flat. An owed exit
    unsettles its row: the exits go out on the next ticks."""
    from replication.controls import engine_control_update

    STAFF = "money-longrun"
    entry(desk, orch)
    engine_control_update(actor=STAFF, dry_run=True)
    desk.place("SELL", FUT, 150)
    settle(orch, 2)
    assert desk.positions(FUT) == HELD  # dry run: nothing sent
    engine_control_update(actor=STAFF, halted=True)
    settle(orch, 2)
    engine_control_update(actor=STAFF, halted=False, dry_run=False)
    with override_settings(OWED_EXIT_BACKOFF=(0,), CONVERGE_SWEEP_SECONDS=3600):
        settle(orch, 4)
    assert desk.positions(FUT) == FLAT


def test_money_entry_planned_in_dry_run_entitles_nothing_once_the_dry_run_is_lifted(desk, orch):
    """Issue 11 §3.7, entries are never chased and an exit is owed until done (found by the long
    state machine): in dry run the master sells half (C2's exit of 2 lots is only planned), then buys
    the half back (C2's re-entry of 2 lots is only planned). Dry run moved C2's entitlement by both
    plans, back to 4 lots, so once the dry run was lifted C2 kept 4 lots. What a dry run planned was
    never sent: the re-entry is an entry not made (never chased), the exit is still owed. C2 sells 2
    lots and holds 2, as entitled; the 1-lot children keep their lot (their half exit rounds to 1,
    their re-entry was planned and never made: they are entitled to nothing and sell it)."""
    from replication.controls import engine_control_update

    entry(desk, orch)
    engine_control_update(actor="money-longrun", dry_run=True)
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    desk.place("BUY", FUT, 75)
    settle(orch, 2)
    assert desk.positions(FUT) == HELD  # dry run: nothing sent
    engine_control_update(actor="money-longrun", dry_run=False)
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 4)
    assert desk.positions(FUT)["C2"] == 150


def added_in_dry_run_then_halted_and_sold(desk, orch) -> None:
    """After the worked example's entry: in dry run the master adds a lot (C2's 2 lots only
    planned), then the engine is halted and the master sells a lot (not yet seen by a tick)."""
    from replication.controls import engine_control_update

    entry(desk, orch)
    engine_control_update(actor="money-longrun", dry_run=True)
    desk.place("BUY", FUT, 75)
    settle(orch, 2)
    engine_control_update(actor="money-longrun", halted=True)
    desk.place("SELL", FUT, 75)


def test_money_exit_sized_under_a_halt_and_a_dry_run_is_owed_once_both_are_lifted(desk, orch):
    """Issue 11 §3.7, dry runs and an exit owed until done (found by `make test-slow`): in dry run
    the master adds a lot (C2's entry of 2 lots is only planned), the engine is halted, and the
    master sells a lot. E still counted C2's dry-run entry (the child is in dry run) but H did not
    (the gate's verdict said "halted", so its dry runs were not counted as held): 6 -> 4 lots
    entitled against 4 held, nothing owed, and the row settled for good. Once the halt and the dry
    run are lifted the planned entry entitles nothing: E = 4 - round(4/3) = 3 lots and C2 sells 1."""
    from replication.controls import engine_control_update

    added_in_dry_run_then_halted_and_sold(desk, orch)
    settle(orch, 2)
    assert desk.positions(FUT) == HELD  # halted and dry run: nothing sent
    engine_control_update(actor="money-longrun", halted=False, dry_run=False)
    with override_settings(OWED_EXIT_BACKOFF=(0,), CONVERGE_SWEEP_SECONDS=3600):
        settle(orch, 4)
    assert desk.positions(FUT) == {**HELD, "C2": 225}


def test_money_switches_thrown_during_a_convergence_pass_leave_no_exit_unowed(desk, orch, monkeypatch):
    """The same path, with staff lifting the halt and the dry run in the middle of the convergence
    pass (found in review): E was replayed with the switches read once and what is held was judged
    with a later read, so E counted C2's planned entry and H did not, and the row settled. One read
    of the switches serves both: C2 sells its lot once the switches are off."""
    from replication import convergence
    from replication.controls import engine_control_update

    added_in_dry_run_then_halted_and_sold(desk, orch)
    real_holdings = convergence.holdings
    lifted: list[bool] = []

    def holdings_while_staff_lift_the_switches(*args, **kwargs):
        if not lifted:
            engine_control_update(actor="money-longrun", halted=False, dry_run=False)
            lifted.append(True)
        return real_holdings(*args, **kwargs)

    monkeypatch.setattr(convergence, "holdings", holdings_while_staff_lift_the_switches)
    orch.run_tick()  # the master's sell is seen; the switches go off during its convergence pass
    assert lifted
    assert desk.positions(FUT) == HELD
    with override_settings(OWED_EXIT_BACKOFF=(0,), CONVERGE_SWEEP_SECONDS=3600):
        settle(orch, 4)
    assert desk.positions(FUT) == {**HELD, "C2": 225}


def test_money_exit_owed_behind_an_entry_in_flight_is_sent_once_the_entry_fills(desk, orch):
    """Issue 11 §3.7, an exit is owed until done (found by the long state machine): in dry run the
    master goes flat, so the children's exits are only planned. The dry run is lifted and the master
    buys again before the next tick. That tick the convergence stage saw C2's new entry in flight
    (E = the new entry, H = the old position below it) and settled the row with the entry still
    working: once it filled, C2 held its old 4 lots on top, and no tick looked again. A row stays
    followed while anything is in flight; C2 ends with the new entry's 4 lots."""
    from replication.controls import engine_control_update

    entry(desk, orch)
    engine_control_update(actor="money-longrun", dry_run=True)
    desk.place("SELL", FUT, 150)
    settle(orch, 2)
    assert desk.positions(FUT) == HELD  # dry run: nothing sent
    engine_control_update(actor="money-longrun", dry_run=False)
    desk.place("BUY", FUT, 150)
    with override_settings(OWED_EXIT_BACKOFF=(0,), CONVERGE_SWEEP_SECONDS=3600):
        settle(orch, 6)
    assert desk.positions(FUT) == HELD


def test_money_resting_exit_that_fills_after_the_master_added_is_a_part_exit(desk, orch):
    """Issue 11 §3.4/§3.7 (found by the long state machine): the master is short
    1 lot (C2 halted, so C2 holds nothing) and rests a BUY LIMIT target for that lot: an exit of
    everything, planned when it is seen. The master then sells 1 more lot (C2, resumed, follows:
    short 2 lots), and the target fills: it closed half of the master's position, so C2 should buy
    1 of its 2 lots back. The engine sized the target when it was placed (master flat after it), so
    its entitlement replay started after it and C2 kept both lots. A resting exit is applied where
    it filled, with the ratio against the position then: C2 buys 1 lot back."""
    from accounts.models import Account, AccountStatus

    orch.run_tick()
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.HALTED)
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.ACTIVE)
    desk.place("BUY", FUT, 75, order_type="LIMIT", price=Decimal("19850"))
    settle(orch, 2)
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    assert desk.positions(FUT)["C2"] == -150
    set_price(FUT, "19850")
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT)["C2"] == -75


def test_money_exit_owed_is_sent_though_an_entry_in_that_direction_rests(desk, orch):
    """Issue 11 §3.7, an exit is owed until done (found by the long state machine): C2's mirror of a
    master SELL LIMIT entry fills after the master cancelled it (C2's cancel held back), so C2 is
    short 4 lots it is not entitled to. The master then rests a BUY LIMIT entry far from the market;
    C2's mirror of it rests too, and the convergence stage took that resting entry as the exit
    working, so C2 stayed short with the master flat for as long as the entry rested. An entry is
    not an exit: C2 buys its 4 lots back at once, and its entry keeps resting."""
    from accounts.models import Account, AccountStatus

    orch.run_tick()
    order = desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20150"))
    settle(orch, 2)
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.HALTED)
    paper_order_cancel(user_id="MASTER", order_id=order)
    settle(orch, 2)
    set_price(FUT, "20150")  # C2's held-back mirror fills; the master sold nothing
    desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19700"))
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.ACTIVE)
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT)["C2"] == 0
    assert resting("C2").filter(side="BUY", order_type="LIMIT").exists()  # its entry still rests


def test_money_exit_owed_is_not_netted_with_an_entry_resting_on_the_same_side(desk, orch):
    """Issue 11 §3.7, an exit is owed until done (found by the mixed-desk state machine, the same on
    paper): C2 is short 4 lots and disabled when the master buys back to flat, so its exit is held
    back. C2 is enabled again as the master rests a new SELL LIMIT entry above the market; C2's
    mirror rests too. The entitlement counted that resting entry (-4 lots) and C2's old short
    (-4 lots) looked entitled, so nothing was bought back: when the entry fills C2 would be short
    8 lots, and until then it is short 4 with the master flat. What is owed is judged against what
    filled: C2 buys its 4 lots back at once, and its entry keeps resting."""
    from accounts.models import Account, AccountStatus
    from accounts.services import account_set_status

    orch.run_tick()
    desk.place("SELL", FUT, 150)
    settle(orch, 2)
    assert desk.positions(FUT)["C2"] == -300
    c2 = Account.objects.get(broker_user_id="C2")
    account_set_status(
        account=c2, status=AccountStatus.DISABLED, actor="staff", reason="client left", force=True
    )
    desk.place("BUY", FUT, 150)
    settle(orch, 2)
    assert desk.positions(FUT)["C2"] == -300  # its exit is held back while it is disabled
    account_set_status(account=c2, status=AccountStatus.ACTIVE, actor="staff", reason="back")
    desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20150"))
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT)["C2"] == 0
    assert resting("C2").filter(side="SELL", order_type="LIMIT").exists()  # its entry still rests


def test_money_resting_exit_filling_after_other_events_at_the_same_position_is_applied_last(desk, orch):
    """Issue 11 §3.4/§3.7 (found by the long state machine): the master is short 1 lot and rests a
    BUY LIMIT target for it. Before it fills, the master sells 1 more lot and buys 1 back at
    market: the master is short 1 lot again, the position the target was sized against. The
    target then fills and the master is flat. The replay applied the target where it was placed
    (before the add and the part exit), so what the children added after it was never taken back:
    C2 stayed short with the master flat. A resting exit that fills after other events counts
    where it fills: every child ends flat."""
    orch.run_tick()
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    desk.place("BUY", FUT, 75, order_type="LIMIT", price=Decimal("19850"))
    settle(orch, 2)
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    desk.place("BUY", FUT, 75)
    settle(orch, 2)
    set_price(FUT, "19850")
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT) == FLAT
    assert not resting().exists()


def test_money_exit_limit_sent_late_goes_market_though_a_new_entry_rests(desk, orch, faults):
    """Issue 11 §3.4/§3.7 (found by the long state machine): the master is short 1 lot and its
    BUY LIMIT target fills (the master is flat); C2's mirror of it timed out unplaced, is proven
    absent and sent again at the target's price, which the market has left, so it rests. The
    master then rests a new SELL LIMIT entry. A late exit mirror goes MARKET once the child is
    entitled to nothing on that side, but the resting entry counted as entitlement (C2 "entitled"
    short 2 lots), so C2's old short stayed with its mirror resting. Judged against what filled,
    C2's exit goes MARKET: C2 is flat, its new entry resting."""
    orch.run_tick()
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    assert desk.positions(FUT)["C2"] == -150
    desk.place("BUY", FUT, 75, order_type="LIMIT", price=Decimal("19850"))
    faults.unknown_not_placed.add("C2")
    orch.run_tick()  # mirrors: C2's place times out, nothing placed
    set_price(FUT, "19850")  # the master's target fills: flat; so do the other children's mirrors
    set_price(FUT, "20000")
    desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20150"))
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT)["C2"] == 0
    assert resting("C2").filter(side="SELL", order_type="LIMIT").exists()  # its new entry rests


def test_money_resting_entry_that_fills_after_the_master_turned_around_is_a_close(desk, orch):
    """Issue 11 §3.2/§3.7 (found by the long state machine): the master is long 1
    lot and rests a BUY LIMIT to add a lot (an entry; C2 is halted, so C2 gets no mirror). The
    master then sells 2 lots at market (flat, then short 1 lot; C2, resumed, goes short 2 lots).
    The resting BUY fills: at that moment it closes the master's short, and the master is flat.
    The engine treated it as the entry it was when placed, so C2 stayed short with the master
    flat. A resting order is an entry or an exit by the position it fills against: it is now an
    exit (r = 1 against the short it closed), so C2 owes and sends its exit."""
    from accounts.models import Account, AccountStatus

    orch.run_tick()
    desk.place("BUY", FUT, 75)
    settle(orch, 2)
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.HALTED)
    desk.place("BUY", FUT, 75, order_type="LIMIT", price=Decimal("19850"))
    settle(orch, 2)
    Account.objects.filter(broker_user_id="C2").update(status=AccountStatus.ACTIVE)
    desk.place("SELL", FUT, 150)
    settle(orch, 2)
    set_price(FUT, "19850")
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT) == FLAT


def test_money_resting_entry_that_closes_a_position_opened_in_the_same_tick_is_replayed_after_it(desk, orch):
    """Issue 17 session, found by the long state machine (`make test-slow`): the master rests a
    BUY LIMIT (an entry; the children's mirrors rest too). Between two ticks it sells 1 lot at
    market (short) and then the resting BUY fills, closing that short: the master is flat. Both
    are seen by one tick. The BUY was retimed as an exit (the fix above) but replayed before the
    SELL of the same tick, which filled first: the replay ended on the SELL, every child was
    "entitled" to its short and C2 was driven short 2 lots with the master flat. A retimed exit is
    replayed after the allocations of this tick's orders that filled before it."""
    orch.run_tick()
    desk.place("BUY", FUT, 75, order_type="LIMIT", price=Decimal("19850"))
    settle(orch, 2)
    assert resting().exists()  # the children's mirrors rest with it
    desk.place("SELL", FUT, 75)  # fills at once: the master is short 1 lot
    set_price(FUT, "19850")  # then the resting BUY fills: flat (and so do the children's)
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 8)
    assert desk.positions(FUT) == FLAT
    assert not resting().exists()


def test_money_master_flat_by_another_order_while_its_resting_close_still_rests(desk, orch):
    """Issue 17 session, found by the long state machine on the landed code (cut down from 61
    steps, preconditions kept): the master
    goes short 1 lot (a SELL LIMIT made MARKET), rests a BUY LIMIT of 2 lots (the close of that
    short plus an entry of 1 lot; the children's mirrors rest too), then closes the short with a
    BUY at market instead. The master holds nothing; its BUY LIMIT still rests. C2 stays short 2
    lots: the market close gave it no order, because its resting BUY mirror counts as the exit
    working, and that mirror rests as long as the master's order does. DESIGN §3.7 asks every
    child to hold what the master's position entitles it to (nothing) whatever still rests: once
    the master holds nothing there, a child's resting exit mirror goes MARKET, as it does when
    the master's exit order itself filled."""
    orch.run_tick()
    sell = desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20150"))
    orch.run_tick()  # the children's SELL mirrors rest
    paper_order_modify(user_id="MASTER", order_id=sell, order_type="MARKET")  # short 1 lot
    desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19850"))  # rests
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
        desk.place("BUY", FUT, 75)  # the master closes its short at market: it holds nothing
        settle(orch, 6)
    assert desk.positions(FUT) == FLAT
