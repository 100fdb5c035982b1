"""Each rule of DESIGN §3 and §4.2 through run_tick on the paper exchange."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import AccountStatus
from brokers.paper.models import PaperOrder
from replication.controls import engine_control_update
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    MappingStatus,
    MasterOrder,
    OrderMapping,
    ReplicationEvent,
)
from replication.services import allocation_approve
from tests.engine_helpers import CALL, FUT, set_price

pytestmark = pytest.mark.django_db


def _entry(desk, orch, qty=150):
    orch.run_tick()
    desk.place("BUY", FUT, qty)
    return orch.run_tick()


def test_engine_rejected_master_order_recorded_not_copied(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 1800)  # 36 lots need 36L of margin, the master has 10L: REJECTED
    orch.run_tick()
    mo = MasterOrder.objects.get()
    assert mo.status == "REJECTED"
    assert not Allocation.objects.exists()
    assert ReplicationEvent.objects.filter(kind="master_order_rejected").count() == 1


def test_engine_aggregates_slices_seen_in_one_tick(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 75)
    desk.place("BUY", FUT, 75)
    orch.run_tick()
    alloc = Allocation.objects.get()
    assert alloc.master_quantity == 150 and alloc.master_orders.count() == 2
    assert desk.positions(FUT)["C2"] == 300  # one rounding for the whole 2 lots, not 2 x 1 lot


def test_engine_crossing_zero_splits_close_and_open(desk, orch):
    _entry(desk, orch)
    desk.place("SELL", FUT, 75 * 3)  # long 2 lots, sell 3: close 2, open 1 short
    orch.run_tick()
    kinds = sorted(Allocation.objects.values_list("kind", "master_quantity"))
    assert (AllocationKind.CLOSE, 150) in kinds and (AllocationKind.OPEN, 75) in kinds
    close = Allocation.objects.get(kind=AllocationKind.CLOSE)
    assert close.exit_ratio == 1
    pos = desk.positions(FUT)
    assert all(q <= 0 for q in pos.values())  # every long closed; some children short the new lot
    assert pos["C2"] == -150  # 20L child: fraction of the new short


def test_engine_exit_never_touches_quantity_the_engine_did_not_place(desk, orch):
    _entry(desk, orch)
    desk.place("BUY", FUT, 75, user="C2")  # the client's own trade
    desk.place("SELL", FUT, 150)  # master flat
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 75  # the client's own lot is left alone


def test_engine_limit_order_mirrored_modified_then_cancelled(desk, orch):
    orch.run_tick()
    oid = desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19900"))
    orch.run_tick()
    child = OrderMapping.objects.get(child=desk.children["C2"])
    assert (
        child.status == MappingStatus.OPEN and child.order_type == "LIMIT" and child.price == Decimal("19900")
    )
    from brokers.paper.services import paper_order_cancel, paper_order_modify

    paper_order_modify(user_id="MASTER", order_id=oid, price=Decimal("19950"))
    orch.run_tick()
    assert PaperOrder.objects.get(
        order_id=OrderMapping.objects.get(pk=child.pk).broker_order_id
    ).price == Decimal("19950")
    paper_order_cancel(user_id="MASTER", order_id=oid)
    orch.run_tick()
    assert set(OrderMapping.objects.filter(quantity__gt=0).values_list("status", flat=True)) == {
        MappingStatus.CANCELLED
    }
    assert not PaperOrder.objects.filter(account__user_id__startswith="C", status="OPEN").exists()


def test_engine_master_flat_cancels_open_child_entries(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()  # fills recorded
    mapping = OrderMapping.objects.get(child=desk.children["C2"])
    assert mapping.status == MappingStatus.FILLED
    oid = desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19000"))  # master adds, unfilled
    orch.run_tick()
    open_entry = OrderMapping.objects.get(child=desk.children["C2"], status=MappingStatus.OPEN)
    from brokers.paper.services import paper_order_cancel

    paper_order_cancel(user_id="MASTER", order_id=oid)
    desk.place("SELL", FUT, 150)  # master flat
    orch.run_tick()
    open_entry.refresh_from_db()
    assert open_entry.status == MappingStatus.CANCELLED
    assert desk.positions(FUT) == {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}


def test_engine_pause_blocks_entries_but_exits_continue(desk, orch):
    _entry(desk, orch)
    engine_control_update(actor="ops", paused=True)
    desk.place("BUY", FUT, 75)
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 300
    assert OrderMapping.objects.filter(reason_code="engine_paused").count() == 5
    desk.place("SELL", FUT, 225)  # flat
    orch.run_tick()
    assert desk.positions(FUT) == {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}


def test_engine_child_pause_and_halt(desk, orch):
    desk.children["C1"].status = AccountStatus.PAUSED
    desk.children["C1"].save()
    desk.children["C2"].status = AccountStatus.HALTED
    desk.children["C2"].save()
    _entry(desk, orch)
    pos = desk.positions(FUT)
    assert pos["C1"] == 0 and pos["C2"] == 0 and pos["C4"] == 75


def test_engine_global_halt_sends_nothing(desk, orch):
    engine_control_update(actor="ops", halted=True)
    _entry(desk, orch)
    assert PaperOrder.objects.exclude(account__user_id="MASTER").count() == 0
    assert OrderMapping.objects.filter(reason_code="engine_halted").count() == 5


def test_engine_dry_run_records_without_sending(desk, orch):
    engine_control_update(actor="ops", dry_run=True)
    _entry(desk, orch)
    assert PaperOrder.objects.exclude(account__user_id="MASTER").count() == 0
    assert OrderMapping.objects.filter(status=MappingStatus.DRY_RUN).count() == 4


def test_engine_child_dry_run(desk, orch):
    desk.children["C2"].dry_run = True
    desk.children["C2"].save()
    _entry(desk, orch)
    assert OrderMapping.objects.get(child=desk.children["C2"]).status == MappingStatus.DRY_RUN
    assert desk.positions(FUT)["C2"] == 0 and desk.positions(FUT)["C1"] == 75


def test_engine_approval_mode_holds_until_staff_approves(desk, orch):
    engine_control_update(actor="ops", approval_mode=True)
    _entry(desk, orch)
    alloc = Allocation.objects.get()
    assert alloc.status == AllocationStatus.AWAITING_APPROVAL
    assert PaperOrder.objects.exclude(account__user_id="MASTER").count() == 0
    assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4  # sized, waiting
    allocation_approve(allocation=alloc, actor="staff")
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 300


@override_settings(MAX_EVENT_AGE=60)
def test_engine_late_event_waits_for_approval(desk, orch):
    orch.run_tick()
    oid = desk.place("BUY", FUT, 150)
    PaperOrder.objects.filter(order_id=oid).update(placed_at=timezone.now() - timedelta(minutes=10))
    orch.run_tick()
    alloc = Allocation.objects.get()
    assert alloc.status == AllocationStatus.AWAITING_APPROVAL
    assert "MAX_EVENT_AGE" in alloc.reason
    assert desk.positions(FUT)["C2"] == 0


def test_engine_fill_mode_copies_fills_as_market(desk, orch):
    with override_settings(REPLICATION_MODE="fill"):
        orch.run_tick()
        desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19900"))
        orch.run_tick()
        assert not OrderMapping.objects.exists()  # nothing filled, nothing copied
        set_price(FUT, "19890")  # the master's LIMIT fills
        orch.run_tick()
        orch.run_tick()
        m = OrderMapping.objects.get(child=desk.children["C2"])
        assert m.order_type == "MARKET" and m.quantity == 300 and m.status == MappingStatus.FILLED


def test_engine_caps_reduce_lots_and_say_why(desk, orch):
    c2 = desk.children["C2"]
    c2.max_lots_per_order = 2
    c2.save()
    _entry(desk, orch)
    m = OrderMapping.objects.get(child=c2)
    assert m.lots == 2 and m.reason_code == "max_lots_per_order"


def test_engine_token_expired_child_needs_login_others_complete(desk, orch, faults):
    faults.token_expired.add("C2")
    result = _entry(desk, orch)
    c2 = desk.children["C2"]
    c2.refresh_from_db()
    assert c2.status == AccountStatus.NEEDS_LOGIN
    pos = desk.positions(FUT)
    assert pos["C1"] == 75 and pos["C4"] == 75 and pos["C5"] == 75
    assert result.dispatch.accepted == 3
    # the next event skips C2 with its reason, the others follow
    faults.token_expired.clear()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    assert OrderMapping.objects.filter(child=c2, reason_code="needs_login").exists()


def test_engine_breaker_trips_after_repeated_failures(desk, orch, faults):
    orch.run_tick()
    c2 = desk.children["C2"]

    def reject_c2(user, req):
        if user == "C2":
            from brokers.errors import OrderRejected

            raise OrderRejected("RMS: blocked")

    faults.before_place = reject_c2
    for _ in range(3):
        desk.place("BUY", FUT, 75)
        orch.run_tick()
    c2.refresh_from_db()
    assert c2.consecutive_failures == 3
    assert c2.breaker_tripped_at is not None
    assert ReplicationEvent.objects.filter(kind="breaker_tripped", account=c2).count() == 1
    desk.place("BUY", FUT, 75)
    orch.run_tick()
    assert OrderMapping.objects.filter(child=c2, reason_code="breaker_tripped").count() == 1
    assert desk.positions(FUT)["C4"] == 0  # C4's share of one lot is below one lot every time
    assert desk.positions(FUT)["C5"] == 0


def test_engine_master_read_failure_stops_safely(desk, orch, faults):
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    faults.reads_down.add("MASTER")
    result = orch.run_tick()
    assert result.errors and "master read failed" in result.errors[0]
    assert not Allocation.objects.exists()
    faults.reads_down.clear()
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 300


def test_engine_child_without_capital_reading_is_skipped_with_reason(desk, orch, faults):
    faults.reads_down.add("C5")
    _entry(desk, orch)
    m = OrderMapping.objects.get(child=desk.children["C5"])
    assert m.status == MappingStatus.SKIPPED and m.reason_code == "no_capital"
    assert desk.positions(FUT)["C2"] == 300


def test_engine_unknown_instrument_and_missing_lot_size_recorded(desk, orch, faults):
    from brokers.types import Order, OrderStatus, OrderType, Product, Side

    orch.run_tick()
    ghost = Order(
        order_id="999000111",
        exchange="NFO",
        tradingsymbol="GHOST25DECFUT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        product=Product.NRML,
        quantity=50,
        status=OrderStatus.COMPLETE,
        filled_quantity=50,
        placed_at=timezone.now(),
    )
    faults.extra_orders["MASTER"] = [ghost]
    result = orch.run_tick()
    assert any("unknown instrument" in e for e in result.errors)
    assert ReplicationEvent.objects.filter(kind="event_skipped").exists()
    assert not OrderMapping.objects.exists()
    from brokers.paper.models import PaperInstrument

    PaperInstrument.objects.filter(tradingsymbol=CALL).update(lot_size=0)
    orch.instruments.invalidate()
    faults.extra_orders.clear()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 300  # a bad instrument elsewhere does not stop good events


def test_engine_queue_mode_sends_through_one_task_per_shard(desk, orch):
    with override_settings(FANOUT_MODE="queue", FANOUT_SHARDS=3):  # django-q2 runs tasks inline in tests
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        result = orch.run_tick()
        planned = {c.pk % 3 for n, c in desk.children.items() if n != "C3"}  # C3 is below one lot
        assert result.queued_shards == len(planned)
        assert desk.positions(FUT) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}
        orch.run_tick()
        assert set(OrderMapping.objects.filter(quantity__gt=0).values_list("status", flat=True)) == {
            MappingStatus.FILLED
        }


def test_engine_queue_task_from_a_stale_leader_sends_nothing(desk, orch, monkeypatch):
    from django_q.conf import Conf
    from django_q.models import OrmQ

    from replication.tasks import dispatch_shard

    monkeypatch.setattr(Conf, "SYNC", False)  # enqueue for a cluster instead of running inline
    with override_settings(FANOUT_MODE="queue", FANOUT_SHARDS=1):
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
    assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4
    assert OrmQ.objects.count() == 1
    summary = dispatch_shard(0, 1, "someone-else", 99, 15.0)
    assert "lease lost" in summary
    assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4
    assert desk.positions(FUT)["C2"] == 0
    lease = orch._replicator.lease  # the leader's own task sends
    assert "sent=4" in dispatch_shard(0, 1, lease.holder, lease.epoch, 15.0)
    assert desk.positions(FUT)["C2"] == 300


def test_engine_slices_child_orders_above_the_freeze_quantity(desk, orch):
    from brokers.paper.services import paper_account_set_cash

    paper_account_set_cash(user_id="C2", cash=Decimal("10000000"))  # ₹1 crore
    orch.run_tick()
    desk.place("BUY", FUT, 300)  # 4 lots: f = 0.6, C2's share 60L = 40 lots = 3,000 > freeze 1,800
    orch.run_tick()
    slices = list(OrderMapping.objects.filter(child=desk.children["C2"]).order_by("slice_no"))
    assert [(m.slice_no, m.quantity) for m in slices] == [(0, 1800), (1, 1200)]
    assert len({m.tag for m in slices}) == 2
    assert desk.positions(FUT)["C2"] == 3000
    desk.place("SELL", FUT, 300)  # master flat: the exit is sliced too
    orch.run_tick()
    orch.run_tick()
    exits = OrderMapping.objects.filter(child=desk.children["C2"], side="SELL").order_by("slice_no")
    assert [m.quantity for m in exits] == [1800, 1200]
    assert desk.positions(FUT)["C2"] == 0


def test_engine_nets_buys_and_sells_of_one_instrument_seen_in_one_tick(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    desk.place("SELL", FUT, 150)
    desk.place("SELL", FUT, 75)  # all three before the engine looks: the master ends 1 lot short
    orch.run_tick()
    allocs = list(Allocation.objects.all())
    assert [(a.kind, a.side, a.master_quantity) for a in allocs] == [(AllocationKind.OPEN, "SELL", 75)]
    assert allocs[0].master_orders.count() == 3
    pos = desk.positions(FUT)
    assert all(q <= 0 for q in pos.values())  # nobody ends long while the master is short
    assert pos["C2"] == -150  # f = 0.15 of ₹20,00,000 = ₹3,00,000: 2 lots


def test_engine_netted_tick_that_ends_flat_closes_every_child(desk, orch):
    _entry(desk, orch)
    desk.place("SELL", FUT, 225)
    desk.place("BUY", FUT, 75)  # net: sell the 2 lots held
    orch.run_tick()
    close = Allocation.objects.get(kind=AllocationKind.CLOSE)
    assert close.exit_ratio == 1 and close.master_quantity == 150
    assert desk.positions(FUT) == {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}


def test_engine_calculator_down_sizes_from_the_margin_rise_and_says_so(desk, orch, faults):
    orch.run_tick()
    faults.calculator_down.add("MASTER")
    desk.place("BUY", FUT, 150)
    result = orch.run_tick()
    assert any("order-margin calculator unavailable" in e for e in result.errors)
    assert any("LTP unavailable" in e for e in result.errors)
    alloc = Allocation.objects.get()
    assert alloc.margin_source == "delta_u" and alloc.fraction == Decimal("0.3")  # ΔU 3L of 10L
    assert desk.positions(FUT)["C2"] == 300  # the worked example still holds


def test_engine_basket_calculator_down_for_a_hedge_still_sizes_the_group(desk, orch, faults):
    orch.run_tick()
    faults.calculator_down.add("MASTER")
    desk.place("BUY", CALL, 150)
    desk.place("SELL", FUT, 150)
    result = orch.run_tick()
    assert any("basket-margin calculator unavailable" in e for e in result.errors)
    assert Allocation.objects.filter(kind=AllocationKind.OPEN).count() == 2
    positions = desk.positions(FUT)
    assert positions["C2"] < 0 and desk.positions(CALL)["C2"] == -positions["C2"]  # whole units


def test_engine_modified_order_that_crossed_zero_rescales_close_and_open_separately(desk, orch):
    from brokers.paper.services import paper_order_modify

    _entry(desk, orch)  # master long 2 lots, C2 long 4 lots (300)
    oid = desk.place("SELL", FUT, 225, order_type="LIMIT", price=Decimal("20100"))  # rests
    orch.run_tick()  # close 2 lots (ratio 1) + open 1 lot short, mirrored as resting LIMITs
    c2 = desk.children["C2"]
    close = OrderMapping.objects.get(child=c2, allocation__kind=AllocationKind.CLOSE)
    opened = OrderMapping.objects.get(child=c2, allocation__kind=AllocationKind.OPEN, side="SELL")
    assert (close.quantity, opened.quantity) == (300, 150)
    paper_order_modify(user_id="MASTER", order_id=oid, quantity=300)  # now 4 lots: close 2, open 2
    orch.run_tick()
    close.refresh_from_db()
    opened.refresh_from_db()
    assert close.quantity == 300  # still exactly what C2 holds, not doubled
    assert opened.quantity == 300  # the open part went from 1 lot to 2
    assert Allocation.objects.get(kind=AllocationKind.CLOSE).master_quantity == 150
    assert Allocation.objects.get(kind=AllocationKind.OPEN, side="SELL").master_quantity == 150
    set_price(FUT, "20100")  # everything fills
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == -300  # flat from the close, then short the new 2 lots x 2
