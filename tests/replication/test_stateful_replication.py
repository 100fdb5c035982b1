"""A stateful hypothesis test of the order-mapping state machine and reconciliation (issue 7).

The real engine runs on the paper exchange (the DESIGN §3.6 desk). Hypothesis interleaves: the
master trades (the future and the call, within position limits), ticks, child faults (placed but
"unknown", unknown and not placed, rate-limited, reads down, token expired and later restored),
crashes at a named failpoint, restarts (a new orchestrator; a crashed one's lease runs out, a
live one hands it back) and reconciliations.

Always: no tag has more than one broker order and no child order exists without an intent; a
reconciliation's actual position is its expected position plus the fills the database has not
seen yet. After a quiescent phase (faults cleared, tokens restored, several ticks): every mapping
is final, its fills are the broker's, each child's replicated position is its broker position
(the children trade nothing by hand here) and reconciliation reports nothing.

Each example starts from the same desk: the desk is built once, every example runs inside a
savepoint that its teardown rolls back. A failure prints the steps and a reproduction blob.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Account, AccountStatus
from brokers.paper.models import PaperOrder, PaperPosition
from replication import failpoints
from replication.allocation import replicated_positions
from replication.failpoints import FailpointTriggered
from replication.models import (
    Allocation,
    AllocationStatus,
    MappingStatus,
    OrchestratorLease,
    OrderMapping,
    ReplicationEvent,
)
from replication.orchestrator import Orchestrator
from replication.reconciliation import Grade, reconcile
from tests.engine_helpers import CALL, CHILDREN, FUT, Desk, build_desk
from tests.faulty_broker import Faults

LOT = 75
# Master position limits in lots (within its ₹10,00,000): the future either way, the call long only.
LIMITS = {FUT: (-4, 4), CALL: (0, 4)}
NAMES = sorted(CHILDREN)
NOT_FINAL = (MappingStatus.PLANNED, MappingStatus.SENDING, MappingStatus.UNKNOWN, MappingStatus.OPEN)
# Final without a broker order (REJECTED too: an input the broker refuses stores nothing there).
NOT_PLACED = (
    MappingStatus.FAILED,
    MappingStatus.REJECTED,
    MappingStatus.CANCELLED,
    MappingStatus.SKIPPED,
    MappingStatus.DRY_RUN,
)
FAULT_KINDS = ("place_then_unknown", "unknown_not_placed", "rate_limited_once", "reads_down", "token_expired")
SETTLE_TICKS = 8
TRADES = st.tuples(
    st.sampled_from([FUT, CALL]), st.sampled_from(["BUY", "SELL"]), st.integers(min_value=1, max_value=3)
)


def _step(fn: Callable[..., None]) -> Callable[..., None]:
    """Mark the machine busy while a rule or invariant runs: if it raises, teardown only cleans up
    (so the failure reported is that step's, not a convergence check on a broken state)."""

    @functools.wraps(fn)
    def wrapper(self: ReplicationMachine, *args: Any, **kwargs: Any) -> None:
        self.busy = True
        fn(self, *args, **kwargs)
        self.busy = False

    return wrapper


def _child_orders() -> list[PaperOrder]:
    return list(PaperOrder.objects.exclude(account__user_id="MASTER").order_by("id"))


class ReplicationMachine(RuleBasedStateMachine):
    desk: Desk
    faults: Faults

    def __init__(self) -> None:
        super().__init__()
        self.busy = True
        self.savepoint = transaction.savepoint()
        self._clear_faults()
        failpoints.reset()
        self.restarts = 0
        self.orch = self._start()
        self.alive = True
        assert self.orch.run_tick().leader  # the master's baseline snapshot
        self.busy = False

    # --- helpers ---------------------------------------------------------------------------------

    def _start(self) -> Orchestrator:
        self.restarts += 1
        return Orchestrator(holder=f"H{self.restarts}", workers=0)

    def _clear_faults(self) -> None:
        f = self.faults
        for kind in FAULT_KINDS:
            getattr(f, kind).clear()
        f.hide_orders.clear()
        f.extra_orders.clear()
        f.places.clear()
        f.before_place = None

    def _master_lots(self, symbol: str) -> int:
        qty = sum(
            PaperPosition.objects.filter(
                account__user_id="MASTER", instrument__tradingsymbol=symbol
            ).values_list("quantity", flat=True)
        )
        return qty // LOT

    def _trade(self, trade: tuple[str, str, int] | None) -> None:
        """The master places a MARKET order, turned around or dropped if it would break LIMITS."""
        if trade is None:
            return
        symbol, side, lots = trade
        low, high = LIMITS[symbol]
        held = self._master_lots(symbol)
        sign = 1 if side == "BUY" else -1
        if not low <= held + sign * lots <= high:
            side, sign = ("SELL", -1) if side == "BUY" else ("BUY", 1)
        if low <= held + sign * lots <= high:
            self.desk.place(side, symbol, lots * LOT)

    def _restore_tokens(self) -> None:
        self.faults.token_expired.clear()
        Account.objects.filter(pk__in=[c.pk for c in self.desk.children.values()]).filter(
            status=AccountStatus.NEEDS_LOGIN
        ).update(status=AccountStatus.ACTIVE)  # the child logged in again

    # --- rules -----------------------------------------------------------------------------------

    @rule(trades=st.lists(TRADES, min_size=1, max_size=2))
    @_step
    def master_trades(self, trades: list[tuple[str, str, int]]) -> None:
        """One or two master orders (two in one tick may make a hedge group)."""
        for trade in trades:
            self._trade(trade)

    @precondition(lambda self: self.alive)
    @rule(trade=st.none() | TRADES)
    @_step
    def tick(self, trade: tuple[str, str, int] | None) -> None:
        """A tick, most often right after a master order (so that it has something to do)."""
        self._trade(trade)
        assert self.orch.run_tick().leader

    @rule(kind=st.sampled_from(FAULT_KINDS), children=st.sets(st.sampled_from(NAMES), min_size=1))
    @_step
    def inject_fault(self, kind: str, children: set[str]) -> None:
        getattr(self.faults, kind).update(children)

    @precondition(lambda self: bool(self.faults.token_expired or self.faults.reads_down))
    @rule()
    @_step
    def restore_children(self) -> None:
        self.faults.reads_down.clear()
        self._restore_tokens()

    @precondition(lambda self: self.alive)
    @rule(
        point=st.sampled_from(sorted(failpoints.NAMES)),
        nth=st.integers(min_value=1, max_value=3),
        trade=st.none() | TRADES,
    )
    @_step
    def crash(self, point: str, nth: int, trade: tuple[str, str, int] | None) -> None:
        """A tick that dies at a failpoint (if it gets there): the process is gone for good."""
        self._trade(trade)
        failpoints.configure({point: f"raise:{nth}"})
        try:
            self.orch.run_tick()
        except FailpointTriggered:
            self.alive = False
            event(f"crashed at {point}")
        finally:
            failpoints.reset()

    @rule()
    @_step
    def restart(self) -> None:
        if self.alive:
            self.orch.close()  # a clean stop hands the lease back
        else:
            OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        self.orch = self._start()
        self.alive = True

    @rule()
    @_step
    def reconciliation(self) -> None:
        """Actual = expected + the fills at the broker the database has not recorded yet."""
        paper = {o.tag: o for o in _child_orders()}
        lag: Counter[tuple[int, str, str, str]] = Counter()
        for m in OrderMapping.objects.filter(quantity__gt=0):
            order = paper.get(m.tag)
            if order is not None:
                sign = 1 if m.side == "BUY" else -1
                lag[(m.child_id, m.exchange, m.tradingsymbol, m.product)] += sign * (
                    order.filled_quantity - m.filled_quantity
                )
        unreadable = {
            self.desk.children[name].pk for name in self.faults.token_expired | self.faults.reads_down
        }
        for d in reconcile():
            if d.actual is None:
                assert d.child_id in unreadable, d
                continue
            key = (d.child_id, d.exchange, d.tradingsymbol, d.product)
            assert d.actual == d.expected + lag[key], (d, lag[key])

    # --- always ----------------------------------------------------------------------------------

    @invariant()
    @_step
    def one_broker_order_per_tag_and_none_without_intent(self) -> None:
        per_tag = Counter(o.tag for o in _child_orders())
        duplicates = {tag: n for tag, n in per_tag.items() if n > 1}
        assert not duplicates, f"tags placed more than once: {duplicates}"
        intents = set(OrderMapping.objects.values_list("tag", flat=True))
        assert set(per_tag) <= intents, f"child orders without an intent: {set(per_tag) - intents}"

    # --- after the run: quiesce and converge -------------------------------------------------------

    def teardown(self) -> None:
        try:
            if not self.busy:
                self._quiesce()
                self._assert_converged()
        finally:
            self._clear_faults()
            failpoints.reset()
            transaction.savepoint_rollback(self.savepoint)

    def _quiesce(self) -> None:
        self._clear_faults()
        self._restore_tokens()
        if not self.alive:
            self.restart()
        for _ in range(SETTLE_TICKS):
            assert self.orch.run_tick().leader
            pending = (
                OrderMapping.objects.filter(status__in=NOT_FINAL).exists()
                or Allocation.objects.filter(sized=False, status=AllocationStatus.PLANNED).exists()
            )
            if not pending:
                break
        self.orch.close()

    def _assert_converged(self) -> None:
        left = list(OrderMapping.objects.filter(status__in=NOT_FINAL).values_list("tag", "status"))
        assert not left, f"not final after {SETTLE_TICKS} quiet ticks: {left}"
        assert not Allocation.objects.filter(sized=False, status=AllocationStatus.PLANNED).exists()
        paper = {o.tag: o for o in _child_orders()}
        for m in OrderMapping.objects.filter(quantity__gt=0):
            order = paper.get(m.tag)
            if order is None:
                assert m.status in NOT_PLACED and m.filled_quantity == 0, (m.tag, m.status, m.filled_quantity)
            else:
                assert m.broker_order_id == order.order_id, (m.tag, m.broker_order_id, order.order_id)
                assert m.filled_quantity == order.filled_quantity, (
                    m.tag,
                    m.filled_quantity,
                    order.filled_quantity,
                )
        # every wanted order that was not placed is surfaced to staff with an event of its own
        unplaced = set(
            OrderMapping.objects.filter(
                quantity__gt=0, status__in=(MappingStatus.FAILED, MappingStatus.REJECTED)
            ).values_list("pk", flat=True)
        )
        surfaced = set(
            ReplicationEvent.objects.filter(mapping_id__in=unplaced).values_list("mapping_id", flat=True)
        )
        assert unplaced == surfaced
        replicated = {
            (cid, sym): held for (cid, _, sym, _), (held, _, _) in replicated_positions().items() if held
        }
        at_broker = self._broker_positions()
        assert replicated == at_broker
        drifts = [d for d in reconcile() if d.grade != Grade.OK]
        assert not drifts, drifts

    def _broker_positions(self) -> dict[tuple[int, str], int]:
        ids = {c.broker_user_id: c.pk for c in self.desk.children.values()}
        out: dict[tuple[int, str], int] = {}
        for user, sym, qty in PaperPosition.objects.filter(account__user_id__in=list(ids)).values_list(
            "account__user_id", "instrument__tradingsymbol", "quantity"
        ):
            if qty:
                out[(ids[user], sym)] = out.get((ids[user], sym), 0) + qty
        return out


def test_replication_state_machine_converges_whatever_the_interleaving(db, faults):
    desk = build_desk()
    machine = type("Machine", (ReplicationMachine,), {"desk": desk, "faults": faults})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=15,
            deadline=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
