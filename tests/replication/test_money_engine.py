"""Issue 11: entitlement, owed exits and the one send gate (DESIGN §3.7), through run_tick on the
paper desk of §3.6, asserting what reaches the child brokers (the paper exchange's own tables)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import AccountStatus
from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_order_cancel, paper_order_modify
from replication.controls import engine_control_update
from replication.lease import lease_acquire
from replication.models import (
    Allocation,
    AllocationStatus,
    Entitlement,
    MappingStatus,
    OrchestratorLease,
    OrderMapping,
    ReplicationEvent,
)
from replication.orchestrator import Orchestrator
from replication.replicator import Replicator
from replication.services import allocation_approve
from tests.engine_helpers import CALL, FUT, set_price

pytestmark = pytest.mark.django_db

FLAT = {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}


def child_orders(user: str | None = None):
    qs = PaperOrder.objects.exclude(account__user_id="MASTER")
    return qs.filter(account__user_id=user) if user else qs


def settle(orch, ticks: int = 4) -> None:
    for _ in range(ticks):
        orch.run_tick()


def entry(desk, orch, qty: int = 150) -> None:
    orch.run_tick()
    desk.place("BUY", FUT, qty)
    orch.run_tick()
    orch.run_tick()  # fills recorded


def set_status(account, status: str) -> None:
    account.status = status
    account.save(update_fields=["status", "updated_at"])


# --- owed exits: an exit is owed until done -----------------------------------------------------


def test_money_rejected_exit_is_sent_again_until_the_child_is_flat(desk, orch, faults):
    """Issue 11 §1 (failed exits never retried): C2's exit is rejected after accept; the engine
    sends it again (a new order, never the same tag twice) and C2 ends flat with the master."""
    entry(desk, orch)
    faults.reject_after_accept.add("C2")
    desk.place("SELL", FUT, 150)  # master flat
    with override_settings(OWED_EXIT_BACKOFF=(0,)):
        settle(orch, 6)
    assert desk.positions(FUT) == FLAT
    tags = list(child_orders("C2").values_list("tag", flat=True))
    assert len(tags) == len(set(tags))
    assert child_orders("C2").filter(side="SELL", status="REJECTED").count() == 1
    assert ReplicationEvent.objects.filter(kind="exit_owed_planned", account=desk.children["C2"]).exists()


def test_money_exit_of_halted_child_is_held_then_sent_on_resume(desk, orch):
    """Issue 11 §1: a child halted when the master exits gets nothing while halted, the reason is
    recorded, and its exit goes out once it is resumed."""
    entry(desk, orch)
    set_status(desk.children["C2"], AccountStatus.HALTED)
    desk.place("SELL", FUT, 150)
    settle(orch, 3)
    assert desk.positions(FUT)["C2"] == 300
    assert not child_orders("C2").filter(side="SELL").exists()
    assert ReplicationEvent.objects.filter(kind="exit_held", account=desk.children["C2"]).count() == 1
    set_status(desk.children["C2"], AccountStatus.ACTIVE)
    settle(orch, 3)
    assert desk.positions(FUT) == FLAT
    assert child_orders("C2").filter(side="SELL").count() == 1


def test_money_exit_after_token_expiry_goes_after_relogin(desk, orch, faults):
    """Issue 11 §1: token expired at the exit → NEEDS_LOGIN; after the login the exit is sent."""
    entry(desk, orch)
    faults.token_expired.add("C1")
    desk.place("SELL", FUT, 150)
    settle(orch, 3)
    desk.children["C1"].refresh_from_db()
    assert desk.children["C1"].status == AccountStatus.NEEDS_LOGIN
    assert desk.positions(FUT)["C1"] == 75
    faults.token_expired.discard("C1")
    set_status(desk.children["C1"], AccountStatus.ACTIVE)  # what a completed login does
    settle(orch, 3)
    assert desk.positions(FUT) == FLAT


def test_money_exit_after_engine_halt_goes_when_lifted(desk, orch):
    """Issue 11 §1: exits held while the engine is halted are sent once the halt is lifted."""
    entry(desk, orch)
    engine_control_update(actor="ops", halted=True)
    desk.place("SELL", FUT, 150)
    settle(orch, 2)
    assert desk.positions(FUT)["C2"] == 300
    engine_control_update(actor="ops", halted=False)
    settle(orch, 3)
    assert desk.positions(FUT) == FLAT


def test_money_master_exits_through_target_next_to_stop_loss(desk, orch):
    """Issue 11 §1: the master holds a stop-loss and a target; the target fills and the master
    cancels the stop-loss. The children's stop-loss mirrors are cancelled with it; their exit is
    still owed and sent, so every child ends flat with the master."""
    entry(desk, orch)
    sl = desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    orch.run_tick()
    target = desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20500"))
    orch.run_tick()
    set_price(FUT, "20600")  # the target fills
    paper_order_cancel(user_id="MASTER", order_id=sl)
    assert PaperOrder.objects.get(order_id=target).status == "COMPLETE"
    settle(orch, 5)
    assert desk.positions(FUT) == FLAT


def test_money_exit_counts_the_entry_still_in_flight(desk, monkeypatch):
    """Issue 11 defect 18: the engine is killed right after an entry's intents commit; the master
    sells half while it is down. On restart the entry goes out and each child then holds what the
    exit rule leaves of its entitlement (C2: 4 lots in flight, r = 1/2 → 2 lots), not the whole
    entry with a too-small exit."""
    first = Orchestrator(holder="A", workers=0)
    first.run_tick()
    desk.place("BUY", FUT, 150)

    def crash(self, **kwargs):
        raise SystemExit("killed after the intent commit")

    monkeypatch.setattr(Replicator, "dispatch", crash)
    with pytest.raises(SystemExit):
        first.run_tick()
    monkeypatch.undo()
    assert OrderMapping.objects.filter(status=MappingStatus.PLANNED).count() == 4
    OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    desk.place("SELL", FUT, 75)  # master sells 1 of 2 lots while the engine is down
    restarted = Orchestrator(holder="B", workers=0)
    try:
        settle(restarted, 5)
    finally:
        restarted.close()
    pos = desk.positions(FUT)
    assert pos == {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}


# --- the send gate, read at send time -------------------------------------------------------------


def test_money_approved_after_halt_sends_nothing(desk, orch):
    """Issue 11 defect 4: intents held for approval, approved after the engine was halted, are
    not sent; the reason is recorded on each."""
    engine_control_update(actor="ops", approval_mode=True)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    engine_control_update(actor="ops", halted=True)
    allocation_approve(
        allocation=Allocation.objects.get(status=AllocationStatus.AWAITING_APPROVAL), actor="s"
    )
    settle(orch, 2)
    assert not child_orders().exists()
    assert OrderMapping.objects.filter(reason_code="engine_halted").count() == 4
    engine_control_update(actor="ops", halted=False)
    settle(orch, 2)
    assert not child_orders().exists()  # a stale entry is never chased


def test_money_deferred_entry_not_sent_after_dry_run_on(desk, orch, faults):
    """Issue 11 defect 4: an entry deferred by a 429 is not sent once dry-run is switched on."""
    orch.run_tick()
    faults.rate_limited_once.add("C2")
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    assert OrderMapping.objects.get(child=desk.children["C2"]).status == MappingStatus.PLANNED
    engine_control_update(actor="ops", dry_run=True)
    settle(orch, 2)
    assert not child_orders("C2").exists()
    assert OrderMapping.objects.get(child=desk.children["C2"]).status == MappingStatus.DRY_RUN


def test_money_queue_shard_task_reads_the_halt(desk, orch):
    """Issue 11 defect 4: a queue-mode `dispatch_shard` task sends nothing once the engine is
    halted, whatever the tick that queued it saw."""
    from replication.tasks import dispatch_shard

    engine_control_update(actor="ops", approval_mode=True)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()  # intents committed, held for approval
    allocation_approve(allocation=Allocation.objects.get(), actor="staff")
    engine_control_update(actor="ops", halted=True)
    lease = orch.replicator(lease_acquire(holder=orch.holder, ttl=orch.lease_ttl)).lease
    result = dispatch_shard(0, 1, lease.holder, lease.epoch, 15)
    assert "sent=0" in result
    assert not child_orders().exists()


def test_money_halted_engine_sends_no_modify_or_cancel(desk, orch):
    """Issue 11 defect 4: with the engine halted, a master modification or cancellation is not
    sent to the children (recorded as held)."""
    orch.run_tick()
    oid = desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19900"))
    orch.run_tick()
    engine_control_update(actor="ops", halted=True)
    paper_order_modify(user_id="MASTER", order_id=oid, price=Decimal("19950"))
    orch.run_tick()
    assert set(child_orders().values_list("price", flat=True)) == {Decimal("19900")}
    paper_order_cancel(user_id="MASTER", order_id=oid)
    orch.run_tick()
    assert set(child_orders().values_list("status", flat=True)) == {"OPEN"}
    assert ReplicationEvent.objects.filter(kind__in=("modify_held", "cancel_held")).exists()


# --- hedges ---------------------------------------------------------------------------------------


def test_money_hedge_sell_leg_withdrawn_when_buy_leg_rejected_after_accept(desk, orch, faults):
    """Issue 11 defect 3: the call (buy leg) is accepted with an id and then rejected by the
    broker's RMS: the future (sell leg) is never sent, and it is withdrawn with a reason."""
    orch.run_tick()
    faults.reject_after_accept.add("C2")
    desk.place("BUY", CALL, 150)
    desk.place("SELL", FUT, 150)
    settle(orch, 3)
    assert not child_orders("C2").filter(tradingsymbol=FUT).exists()
    assert desk.positions(FUT)["C2"] == 0
    sell = OrderMapping.objects.get(child=desk.children["C2"], tradingsymbol=FUT)
    assert sell.status == MappingStatus.CANCELLED and sell.reason_code == "hedge_leg_failed"
    assert desk.positions(FUT)["C1"] == -75  # the others got both legs


# --- per-child isolation, audit, dry run -------------------------------------------------------


def test_money_one_childs_unreadable_credentials_do_not_stop_the_others(desk, orch, monkeypatch):
    """Issue 11 defect 7: a child whose credentials cannot be decrypted fails alone; the master's
    modification still reaches every other child."""
    from accounts.crypto import CredentialDecryptError
    from replication import clients

    orch.run_tick()
    oid = desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19900"))
    orch.run_tick()
    real = clients.credentials_for
    c1 = desk.children["C1"].pk

    def broken(account):
        if account.pk == c1:
            raise CredentialDecryptError("wrong key")
        return real(account)

    monkeypatch.setattr(clients, "credentials_for", broken)
    orch.clients.clear()
    paper_order_modify(user_id="MASTER", order_id=oid, price=Decimal("19950"))
    result = orch.run_tick()
    assert not any("wrong key" in e for e in result.errors) or result.tick_id
    prices = dict(child_orders().values_list("account__user_id", "price"))
    assert prices["C2"] == Decimal("19950") and prices["C1"] == Decimal("19900")


def test_money_fills_are_audited(desk, orch):
    """Issue 11 defect 9: each child's fill is in the audit log."""
    entry(desk, orch)
    fills = ReplicationEvent.objects.filter(kind="order_update", data__status=MappingStatus.FILLED)
    assert fills.count() == 4
    assert all(e.data.get("filled_quantity") for e in fills)


def test_money_dry_run_records_exits(desk, orch):
    """Issue 11 defect 12: in dry-run the exits it would send are recorded too."""
    engine_control_update(actor="ops", dry_run=True)
    entry(desk, orch)
    desk.place("SELL", FUT, 75)
    settle(orch, 2)
    exits = OrderMapping.objects.filter(side="SELL", status=MappingStatus.DRY_RUN)
    assert dict(exits.values_list("child__broker_user_id", "quantity")) == {
        "C1": 75,
        "C2": 150,
        "C4": 75,
        "C5": 75,
    }
    assert not child_orders().exists()


def test_money_disabled_child_exit_recorded_with_reason(desk, orch):
    """Issue 11 defect 11 (engine side): the exit of a child disabled while holding is recorded
    with its reason, never lost without a row."""
    entry(desk, orch)
    set_status(desk.children["C2"], AccountStatus.DISABLED)
    desk.place("SELL", FUT, 150)
    settle(orch, 2)
    held = OrderMapping.objects.get(child=desk.children["C2"], side="SELL")
    assert held.status == MappingStatus.SKIPPED and held.reason_code == "child_disabled"
    assert ReplicationEvent.objects.filter(kind="exit_held", account=desk.children["C2"]).exists()


# --- reconciliation grades against the entitlement ---------------------------------------------


def test_money_reconcile_child_holding_after_master_exit_is_major(desk, orch):
    """Issue 11 §1: reconciliation grades the replicated position against the entitlement: a
    child still holding after the master exited is major, never ok (its broker agrees with the
    engine's orders, so the old expected-vs-actual check called it ok)."""
    from replication.reconciliation import Grade, reconcile

    entry(desk, orch)
    set_status(desk.children["C2"], AccountStatus.HALTED)
    desk.place("SELL", FUT, 150)
    settle(orch, 2)
    drifts = {(d.child_id, d.tradingsymbol): d for d in reconcile()}
    c2 = drifts[(desk.children["C2"].pk, FUT)]
    assert c2.actual == 300 and c2.grade == Grade.MAJOR
    assert drifts[(desk.children["C1"].pk, FUT)].grade == Grade.OK


# --- caps on every path ----------------------------------------------------------------------------


def _limit(account, **fields) -> None:
    for name, value in fields.items():
        setattr(account, name, value)
    account.save(update_fields=[*fields, "updated_at"])


def test_money_market_entry_capped_by_max_order_value_at_the_ltp(desk, orch):
    """Issue 11 defect 5: max order value applies to MARKET orders, priced at the LTP read for the
    event: C2 capped at ₹20 lakh gets 1 lot (₹15 lakh at 20,000), not 4 (₹60 lakh)."""
    _limit(desk.children["C2"], max_order_value=Decimal("2000000"))
    entry(desk, orch)
    assert desk.positions(FUT)["C2"] == 75
    value = sum(o.quantity * Decimal("20000") for o in child_orders("C2"))
    assert value <= Decimal("2000000")


def test_money_master_quantity_modification_stays_within_max_quantity(desk, orch):
    """Issue 11 defect 5: a master quantity modification never scales a child order past its
    max quantity (C2: max 300, master LIMIT 2 → 4 lots: C2's order stays at 300, not 600)."""
    _limit(desk.children["C2"], max_quantity=300)
    orch.run_tick()
    oid = desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19900"))
    orch.run_tick()
    paper_order_modify(user_id="MASTER", order_id=oid, quantity=300)
    settle(orch, 2)
    assert max(child_orders("C2").values_list("quantity", flat=True)) == 300
    assert child_orders("C1").get().quantity == 150  # the others scale with the master


def test_money_exit_split_within_per_order_caps_never_reduced(desk, orch):
    """DESIGN §3.7 invariant (no order above a child's caps) on exits: caps set after the entry
    never reduce an exit (exits continue) but split it into orders within max quantity and max
    order value priced at the LTP for MARKET (C2: 300 held, max ₹20 lakh an order → 4 × 75)."""
    entry(desk, orch)
    _limit(desk.children["C2"], max_order_value=Decimal("2000000"))
    _limit(desk.children["C4"], max_quantity=75)
    desk.place("SELL", FUT, 150)  # master flat
    settle(orch, 3)
    assert desk.positions(FUT) == FLAT
    sells = list(child_orders("C2").filter(side="SELL").values_list("quantity", flat=True))
    assert sum(sells) == 300 and max(sells) * Decimal("20000") <= Decimal("2000000")


def test_money_stop_loss_and_target_placed_together_are_both_exits(desk, orch):
    """Issue 11 §1 / DESIGN §3.2: a stop-loss and a target placed in the same tick each close the
    master's position (neither fills yet); the target fills and the master cancels the stop-loss:
    no child is left holding, and no child was given a fresh opposite entry."""
    entry(desk, orch)
    sl = desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20500"))
    orch.run_tick()
    assert not Allocation.objects.filter(kind="open", side="SELL").exists()
    set_price(FUT, "20600")
    paper_order_cancel(user_id="MASTER", order_id=sl)
    settle(orch, 5)
    assert desk.positions(FUT) == FLAT
    assert (
        not child_orders()
        .filter(side="SELL", status="COMPLETE")
        .exclude(
            tag__in=OrderMapping.objects.filter(allocation__kind__in=("close", "converge")).values("tag")
        )
        .exists()
    )


@override_settings(OWED_EXIT_BACKOFF=(3600,))
def test_money_failed_owed_exit_waits_its_backoff_then_goes(desk, orch, faults):
    """DESIGN §3.7: a failed owed exit is tried again after a pause (OWED_EXIT_BACKOFF), not every
    tick; once the pause is over it goes, and the child ends flat."""
    from brokers.errors import OrderRejected

    entry(desk, orch)
    refusing = {"on": True}

    def refuse_c2_sells(user: str, req) -> None:
        if refusing["on"] and user == "C2" and req.side == "SELL":
            raise OrderRejected("RMS: blocked for the test")

    faults.before_place = refuse_c2_sells
    desk.place("SELL", FUT, 150)
    settle(orch, 4)
    tried = OrderMapping.objects.filter(child=desk.children["C2"], side="SELL", status="rejected").count()
    assert tried == 2  # the exit, then one owed attempt; then it waits
    refusing["on"] = False
    settle(orch, 3)
    assert desk.positions(FUT)["C2"] == 300
    Entitlement.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))  # pause over
    settle(orch, 3)
    assert desk.positions(FUT)["C2"] == 0


def test_money_exit_recorded_in_dry_run_is_sent_once_live(desk, orch):
    """DESIGN §3.7: a child that entered live and was in dry-run when the master exited gets a
    dry-run exit recorded (nothing sent); once dry-run is off, what it really holds is still owed
    and goes out, so it ends flat with the master."""
    entry(desk, orch)
    _limit(desk.children["C2"], dry_run=True)
    desk.place("SELL", FUT, 150)
    settle(orch, 3)
    assert OrderMapping.objects.filter(child=desk.children["C2"], side="SELL", status=MappingStatus.DRY_RUN)
    assert desk.positions(FUT)["C2"] == 300
    _limit(desk.children["C2"], dry_run=False)
    settle(orch, 3)
    assert desk.positions(FUT) == FLAT


def test_money_max_order_value_fails_closed_without_a_price(desk, orch, faults):
    """DESIGN §3.3 step 7 / §3.7: a child with a max order value gets no MARKET entry when the LTP
    for the event cannot be read (the cap cannot be checked); the others still get theirs."""
    _limit(desk.children["C2"], max_order_value=Decimal("2000000"))
    faults.calculator_down.add("MASTER")  # the master's LTP (and calculators) unavailable
    entry(desk, orch)
    assert desk.positions(FUT)["C2"] == 0
    c2 = OrderMapping.objects.get(child=desk.children["C2"])
    assert c2.status == MappingStatus.SKIPPED and c2.reason_code == "max_order_value"
    assert desk.positions(FUT)["C1"] == 75


def test_money_netting_counts_fills_only_a_resting_order_is_mirrored_as_one(desk, orch):
    """DESIGN §3.2 netting, found by the state machine: in one tick the master sells 2 lots at
    market, rests a LIMIT buy of 2 lots and buys 2 lots at market: it is flat. Children must be
    flat too (only fills are netted), with the resting LIMIT mirrored as a resting LIMIT."""
    orch.run_tick()
    desk.place("SELL", FUT, 150)
    desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19000"))
    desk.place("BUY", FUT, 150)
    settle(orch, 2)
    assert desk.positions(FUT) == FLAT
    resting = child_orders().filter(side="BUY", order_type="LIMIT", status="OPEN")
    assert resting.exists() and not child_orders().filter(status="COMPLETE").exists()


def test_money_known_orders_fill_moves_the_position_a_new_order_is_judged_against(desk, orch):
    """DESIGN §3.2 (position before an order: the previous tick's, adjusted by the earlier events of
    this tick), found by the long state machine: the master holds 2 lots with a resting target for
    1; in one tick the target fills and the master sells the last lot at market. That sell closes
    the whole position (r = 1, the master is flat), not half of it: every child ends flat."""
    entry(desk, orch)
    desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20500"))
    orch.run_tick()  # the target is known; children rest their own
    set_price(FUT, "20600")  # the target fills
    desk.place("SELL", FUT, 75)  # and the master sells the rest: flat
    settle(orch, 4)
    assert desk.positions(FUT) == FLAT
    close = Allocation.objects.filter(kind="close", tradingsymbol=FUT).order_by("-pk").first()
    assert close is not None and close.exit_ratio == 1 and close.master_position_before == 75


def test_money_orders_on_both_sides_of_a_known_fill_are_not_netted_across_it(desk, orch):
    """DESIGN §3.2, the state machine's finding: in one tick the master buys a lot, its resting
    target for one lot fills, and it sells 2 lots: 2 -> 3 -> 2 -> 0, flat. Netting the buy and the
    sell across the target's fill made it one half exit (2 -> 1); every child must end flat."""
    entry(desk, orch)
    desk.place("SELL", FUT, 75, order_type="LIMIT", price=Decimal("20500"))
    orch.run_tick()
    desk.place("BUY", FUT, 75)
    set_price(FUT, "20600")  # the target fills
    desk.place("SELL", FUT, 150)
    settle(orch, 5)
    assert desk.positions(FUT) == FLAT


def test_money_cancel_held_while_the_child_needs_login_is_sent_after_login(desk, orch, faults):
    """DESIGN §3.7 (an exit is owed until done; every order write through the gate, whatever failed
    on the way), found by the long state machine: the master rests a stop-loss and a target, which
    C1 mirrors; C1's token expires and the master cancels both, so C1's cancels are held back. After
    C1's login its mirrors are cancelled all the same, and when the master sells at market C1 exits
    with everyone: a stale resting mirror never stands in for the owed exit."""
    entry(desk, orch)
    sl = desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    target = desk.place("SELL", FUT, 150, order_type="LIMIT", price=Decimal("20500"))
    orch.run_tick()
    assert child_orders("C1").filter(status__in=("OPEN", "TRIGGER PENDING")).count() == 2
    faults.token_expired.add("C1")
    paper_order_cancel(user_id="MASTER", order_id=sl)
    paper_order_cancel(user_id="MASTER", order_id=target)
    settle(orch, 2)
    assert ReplicationEvent.objects.filter(kind="cancel_held", account=desk.children["C1"]).exists()
    faults.token_expired.discard("C1")
    set_status(desk.children["C1"], AccountStatus.ACTIVE)  # what a completed login does
    settle(orch, 2)
    assert not child_orders("C1").filter(status__in=("OPEN", "TRIGGER PENDING")).exists()
    desk.place("SELL", FUT, 150)  # the master exits at market
    settle(orch, 4)
    assert desk.positions(FUT) == FLAT
