"""The orchestrator tick (DESIGN §4.1): lease, master read, diff, classify, allocate, replicate, follow up.

Two-phase and crash-safe:
1. master orders and the allocations they cause are committed in one transaction (a restart sees
   the orders as known *and* finds the allocations), marked unsized;
2. each unsized allocation gets its child intents (sized, tagged) in a transaction of its own;
3. committed intents are dispatched by the replicator; outcomes are written back in batches.
A crash between any two steps is picked up by the next tick: unsized allocations are sized,
PLANNED intents are sent, SENDING / UNKNOWN ones are looked up by tag first.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Role
from brokers.base import BrokerClient
from brokers.errors import BrokerError
from brokers.types import InstrumentKey, Order, OrderRequest, OrderStatus, OrderType, Product
from replication import allocator
from replication.clients import CHILD_SECRETS, ClientCache
from replication.controls import engine_control_get
from replication.convergence import converge, sweep_due
from replication.events import (
    BookDiff,
    KnownOrder,
    MasterEvent,
    aggregate,
    classify,
    diff_book,
    effective_quantity,
    engine_tagged,
    note_type_changes,
    placed_before,
    positions_before_tick,
    set_aside_earlier_book,
)
from replication.failpoints import failpoint
from replication.fanout import FanOut
from replication.instruments import InstrumentCache
from replication.lease import Lease, LeaseLost, default_holder, lease_acquire, lease_check, lease_release
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    EngineControl,
    Entitlement,
    MappingStatus,
    MarginSnapshot,
    MasterOrder,
    MasterPosition,
    OrderMapping,
    ReplicationEvent,
    TickRun,
)
from replication.pending import RetryGate, mirrors_due_for_market
from replication.ratelimit import LimiterRegistry
from replication.replicator import DispatchReport, Replicator
from replication.sizing import Leg, MarginSource, paise_shares, plan_group, ratio, rupees

logger = logging.getLogger(__name__)

SNAPSHOT_EVERY = timedelta(seconds=60)
IST = ZoneInfo("Asia/Kolkata")  # the exchange's trading day
PREV_SNAPSHOT_MAX_AGE = 5 * SNAPSHOT_EVERY  # older: no margin reading from just before the tick


@dataclass(slots=True)
class TickResult:
    leader: bool
    tick_id: int | None = None
    epoch: int = 0
    events: int = 0
    allocations: int = 0
    intents: int = 0
    dispatch: DispatchReport = field(default_factory=DispatchReport)
    followed_up: int = 0
    converted: int = 0  # open child mirrors of filled master orders made MARKET (§3.5)
    owed_exits: int = 0  # exits still owed after the convergence stage (§3.7)
    queued_shards: int = 0
    errors: list[str] = field(default_factory=list)
    duration_ms: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)  # perf_counter() instants, for benchmarks

    def summary(self) -> str:
        if not self.leader:
            return "tick: not leader (another orchestrator holds the lease); waiting"
        d = self.dispatch
        lat = sorted(d.latencies_ms)
        p50 = lat[len(lat) // 2] if lat else 0
        return (
            f"tick {self.tick_id} epoch={self.epoch} events={self.events} allocations={self.allocations} "
            f"intents={self.intents} sent={d.sent} accepted={d.accepted} rejected={d.rejected} "
            f"unknown={d.unknown} failed={d.failed} deferred={d.deferred} queued_shards={self.queued_shards} "
            f"updated={self.followed_up} converted={self.converted} "
            f"latency_p50_ms={p50} errors={len(self.errors)} duration_ms={self.duration_ms}"
        )


class Orchestrator:
    """Holds what lives across ticks: identity, broker clients, rate limiters, instrument cache."""

    def __init__(
        self, *, holder: str | None = None, workers: int | None = None, lease_ttl: timedelta | None = None
    ):
        self.holder = holder or default_holder()
        self.clients = ClientCache()
        self.limiters = LimiterRegistry()
        self.instruments = InstrumentCache()
        self.workers = workers
        self.lease_ttl = lease_ttl or timedelta(seconds=getattr(settings, "LEASE_TTL_SECONDS", 15))
        self._replicator: Replicator | None = None
        self._queued_at: dict[int, float] = {}
        self.market_retry = RetryGate()
        self._last_sweep: float | None = None

    def _enqueue_shards(self, lease: Lease, replicator: Replicator) -> int:
        """Queue mode: one `dispatch_shard` task per shard with intents ready (DESIGN §7).

        The database stays the truth: a lost task leaves its intents PLANNED (queued again after
        `QUEUE_REQUEUE_SECONDS`), a repeated one finds them already claimed and does nothing.
        """
        from django_q.tasks import async_task

        count = max(1, int(getattr(settings, "FANOUT_SHARDS", 4)))
        requeue = float(getattr(settings, "QUEUE_REQUEUE_SECONDS", 10))
        now = time.monotonic()
        queued = 0
        for shard in replicator.planned_shards(count):
            if now - self._queued_at.get(shard, -requeue) < requeue:
                continue
            self._queued_at[shard] = now
            async_task(
                "replication.tasks.dispatch_shard",
                shard,
                count,
                lease.holder,
                lease.epoch,
                lease.ttl.total_seconds(),
                task_name=f"dispatch shard {shard}/{count} epoch {lease.epoch}",
                group="dispatch",
            )
            queued += 1
        return queued

    def close(self) -> None:
        """Stop the worker pool and hand the lease back, so a restart takes over at once."""
        if self._replicator is not None:
            self._replicator.close()
            lease_release(lease=self._replicator.lease)

    def replicator(self, lease: Lease) -> Replicator:
        if self._replicator is None:
            self._replicator = Replicator(
                lease=lease, clients=self.clients, limiters=self.limiters, workers=self.workers
            )
        self._replicator.lease = lease
        return self._replicator

    # --- the tick ------------------------------------------------------------------------------

    def _fanout(self) -> FanOut:
        return self._replicator.fanout if self._replicator else FanOut(0)

    def run_tick(self) -> TickResult:
        started = time.perf_counter()
        current = self._replicator.lease if self._replicator is not None else None
        lease = lease_acquire(holder=self.holder, ttl=self.lease_ttl, current=current)
        if lease is None:
            return TickResult(leader=False)
        tick = TickRun.objects.create(holder=self.holder, epoch=lease.epoch)
        result = TickResult(leader=True, tick_id=tick.pk, epoch=lease.epoch)
        replicator = self.replicator(lease)
        try:
            self._tick(lease, tick, replicator, result)
            outcome = TickRun.Outcome.ERROR if result.errors else TickRun.Outcome.OK
        except LeaseLost as exc:
            result.errors.append(f"lease lost: {exc}")
            outcome = TickRun.Outcome.NOT_LEADER
        except Exception as exc:
            logger.exception("tick %s failed", tick.pk)
            result.errors.append(f"{type(exc).__name__}: {exc}")
            outcome = TickRun.Outcome.ERROR
        result.duration_ms = int((time.perf_counter() - started) * 1000)
        TickRun.objects.filter(pk=tick.pk).update(
            finished_at=timezone.now(),
            duration_ms=result.duration_ms,
            outcome=outcome,
            counts={
                "events": result.events,
                "allocations": result.allocations,
                "intents": result.intents,
                "sent": result.dispatch.sent,
                "accepted": result.dispatch.accepted,
                "rejected": result.dispatch.rejected,
                "unknown": result.dispatch.unknown,
                "failed": result.dispatch.failed,
                "updated": result.followed_up,
                "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
            },
            error="\n".join(result.errors)[:4000],
        )
        return result

    def _tick(self, lease: Lease, tick: TickRun, replicator: Replicator, result: TickResult) -> None:
        t0 = time.perf_counter()
        control = engine_control_get()
        # 1. Unknown outcomes and crashed sends first: look them up by tag before anything new.
        result.followed_up += replicator.follow_up(recover=True)
        # 2. Read the master.
        master = Account.objects.filter(role=Role.MASTER).exclude(status=AccountStatus.DISABLED).first()
        if master is None:
            result.errors.append("no enabled master account")
            return
        try:
            client = self.clients.get(master)
            t_read = time.perf_counter()
            funds = client.funds()
            book = client.orders()
            result.marks["master_read_done"] = time.perf_counter()
            result.timings_ms["master_read"] = (result.marks["master_read_done"] - t_read) * 1000
        except (BrokerError, CredentialDecryptError) as exc:
            result.errors.append(f"master read failed, nothing decided this tick: {exc}")
            ReplicationEvent.objects.create(kind="master_read_failed", account=master, message=str(exc)[:500])
            return
        t_engine = time.perf_counter()
        prev = MarginSnapshot.objects.filter(account=master).order_by("-taken_at", "-id").first()
        now = timezone.now()
        if (
            prev is None
            or prev.used_margin != funds.used
            or prev.available_margin != funds.available
            or now - prev.taken_at >= SNAPSHOT_EVERY
        ):
            MarginSnapshot.objects.create(
                account=master,
                used_margin=funds.used,
                available_margin=funds.available,
                capital=funds.capital,
                tick=tick,
            )
        known = {
            mo.broker_order_id: _known(mo)
            for mo in MasterOrder.objects.filter(
                account=master, broker_order_id__in=[o.order_id for o in book]
            )
        }
        diff = diff_book(book, known)
        mode = getattr(settings, "REPLICATION_MODE", "order")
        # 3. Decide: master orders + allocations in one transaction.
        if diff.has_events or diff.rejected or diff.ignored or diff.changed or diff.fills:
            self._record(lease, tick, master, client, diff, prev, funds.used, control, mode, result)
        result.timings_ms["engine_read_diff"] = (time.perf_counter() - t_engine) * 1000
        # 4. Modifications and cancellations of open child orders.
        if mode == "order" and (diff.modified or diff.cancelled):
            self._propagate_changes(master, diff, replicator)
        # 5. Size every unsized allocation (this tick's, or one a crash left behind).
        t_size = time.perf_counter()
        result.intents += self._size_pending(lease, replicator, control)
        result.timings_ms["sizing"] = (time.perf_counter() - t_size) * 1000
        # 6. Send: here in the bounded pool, or (queue mode) one django-q2 task per shard of children.
        # Every intent passes the send gate as it is claimed (a halted engine's intents are held
        # there, with their reasons, rather than left to go out once the halt is lifted).
        t_send = time.perf_counter()
        self._send(lease, replicator, result, halted=control.halted)
        result.timings_ms["dispatch"] = (time.perf_counter() - t_send) * 1000
        # 7. Child mirrors still open after the master's order filled: MARKET per child policy
        # (after the new orders, which must not wait for it).
        if mode == "order" and not control.halted:
            result.converted += self._convert_filled_mirrors(replicator)
        # 8. Converge: exits still owed (failed, skipped, held back, or the master out through a
        # second order) are planned for every child that can trade now, then sent (DESIGN §3.7).
        t_converge = time.perf_counter()
        now_mono = time.monotonic()
        sweep = sweep_due(self._last_sweep, now_mono)
        if sweep:
            self._last_sweep = now_mono
        converged = converge(lease=lease, tick_id=tick.pk, clients=self.clients, sweep=sweep)
        result.owed_exits = converged.owed
        if converged.intents:
            result.intents += converged.intents
            self._send(lease, replicator, result, halted=control.halted)
        result.timings_ms["converge"] = (time.perf_counter() - t_converge) * 1000
        # Orders just sent are refreshed by the next tick's step 1 (or a postback), not here: a
        # second round of order-book reads would double the tick for a thousand children.
        result.timings_ms["total"] = (time.perf_counter() - t0) * 1000

    def _send(self, lease: Lease, replicator: Replicator, result: TickResult, *, halted: bool) -> None:
        """Dispatch here in the bounded pool, or (queue mode) one django-q2 task per shard of
        children. A halted engine dispatches here: the send gate then holds every intent."""
        if settings.FANOUT_MODE == "queue" and not halted:
            result.queued_shards += self._enqueue_shards(lease, replicator)
        else:
            result.dispatch.merge(replicator.dispatch())

    # --- step 3: record and allocate -------------------------------------------------------------

    def _record(
        self,
        lease: Lease,
        tick: TickRun,
        master: Account,
        client: BrokerClient,
        diff: BookDiff,
        prev: MarginSnapshot | None,
        used_now: Decimal,
        control: EngineControl,
        mode: str,
        result: TickResult,
    ) -> None:
        now = timezone.now()
        # An account that became master brought its book: what it placed before is known, not new.
        since = _master_since(master) if diff.new or (mode == "fill" and diff.fills) else None
        set_aside_earlier_book(diff, since)
        # Which new quantities become events: whole orders (mode order) or fills (mode fill).
        if mode == "fill":
            sources = [(o, o.filled_quantity) for o in diff.new if o.filled_quantity > 0]
            sources += [
                (o, o.filled_quantity - k.filled_quantity)
                for o, k in diff.fills
                if o.filled_quantity > k.filled_quantity
                and not engine_tagged(o)
                and not placed_before(o, since)
            ]
        else:
            sources = [(o, effective_quantity(o)) for o in diff.new]
        # The master's position from one consistent view (DESIGN §3.2): the position stored at the
        # previous tick plus the fills in this tick's book, never a positions read made after the
        # book (a fill landing in between would count twice, or not at all). Orders set aside
        # (the engine's own, the book a promoted account brought) are part of the position before.
        fills: dict[tuple[str, str, str], int] = defaultdict(int)
        for o in diff.new:
            fills[(o.exchange, o.tradingsymbol, o.product.value)] += o.filled_quantity * o.side.sign
        for o, k in diff.fills:
            fills[(o.exchange, o.tradingsymbol, o.product.value)] += (
                o.filled_quantity - k.filled_quantity
            ) * o.side.sign
        # Fills of known orders that are no event here move the position the new orders are
        # judged against, where the exchange put them (a resting target that filled before the
        # master sold the rest at market).
        as_events = {o.order_id for o, _ in sources}
        moves = [
            (o, o.filled_quantity - k.filled_quantity)
            for o, k in diff.fills
            if o.filled_quantity > k.filled_quantity and o.order_id not in as_events
        ]
        aside: dict[tuple[str, str, str], int] = defaultdict(int)
        for o, _ in diff.ignored:
            aside[(o.exchange, o.tradingsymbol, o.product.value)] += o.filled_quantity * o.side.sign
        rows = list(MasterPosition.objects.filter(account=master))
        existing = {(mp.exchange, mp.tradingsymbol, mp.product): mp.quantity for mp in rows}
        # Stored positions hold for the trading day they were written on: the broker's book starts
        # afresh each day, so what no book showed (the engine down across a day, an expiry) is
        # caught by the day's first event reading the positions again.
        today = now.astimezone(IST).date()
        fresh = bool(rows) and max(mp.updated_at for mp in rows).astimezone(IST).date() == today
        stored = existing if fresh else {}
        positions_after: dict[tuple[str, str, str], int] | None = None
        if stored and (fills or aside):
            positions_after = _moved(stored, aside, fills)
        events: list[MasterEvent] = []
        prefetched: Prefetched | None = None
        if sources:
            # The calculator reads for the opening group go out at once (with the positions read
            # when there is no stored position yet), for the events as they are when nothing
            # closes (a flat master, or one adding to its positions). They are used only if the
            # classified opening group asks exactly the same; otherwise they are read again.
            guess, guessed_reads = calculator_reads(client, aggregate(classify(sources, {})))
            reads = guessed_reads if stored else {"positions": client.positions, **guessed_reads}
            answers = read_together(self._fanout(), reads)
            if stored:
                before = _moved(stored, aside)
            else:
                # First look at this master: the positions read less this tick's fills.
                positions = answers.pop("positions")
                if isinstance(positions, BrokerError):
                    result.errors.append(
                        f"master positions unavailable, events wait for the next tick: {positions}"
                    )
                    return
                before = positions_before_tick(positions, fills)
                positions_after = _moved(dict.fromkeys(existing, 0), before, fills)
            prefetched = (guess, answers)
            events = aggregate(classify(sources, before, moves))
        # No earlier snapshot (first deploy, a new master): the funds just read, stored this tick.
        # A snapshot from long before this tick (a new master's from its time as a child, the
        # engine back after a gap) is no "before" either: ΔU across it is not this tick's.
        if prev is not None and now - prev.taken_at > PREV_SNAPSHOT_MAX_AGE:
            prev = None
        funds_now = (
            MarginSnapshot.objects.filter(account=master, tick=tick).order_by("-id").first()
            if events and prev is None
            else None
        )
        plans = (
            self._plan_events(master, client, events, prev, used_now, result, prefetched, funds_now)
            if events
            else []
        )
        max_age = timedelta(seconds=getattr(settings, "MAX_EVENT_AGE", 300))
        with transaction.atomic():
            lease_check(lease)
            self._upsert_master_orders(master, diff, now)
            if positions_after is not None:  # with the orders whose fills moved it, or not at all
                self._store_master_positions(master, positions_after, existing, touch=not stored)
            orders_by_id = {
                mo.broker_order_id: mo
                for mo in MasterOrder.objects.filter(
                    account=master, broker_order_id__in=[oid for ev in events for oid in ev.order_ids]
                )
            }
            for o in diff.rejected:
                ReplicationEvent(
                    kind="master_order_rejected",
                    account=master,
                    master_order=orders_by_id.get(o.order_id),
                    message=f"master order {o.order_id} was rejected ({o.status_message[:200]}); "
                    "recorded, not copied",
                ).save()
            group_key = f"t{tick.pk}"
            for ev, plan in zip(events, plans, strict=True):
                if plan is None:
                    continue
                seen_at = now
                age = (now - ev.placed_at) if ev.placed_at else timedelta(0)
                status = AllocationStatus.PLANNED
                hold_reason = ""
                if control.approval_mode:
                    status, hold_reason = AllocationStatus.AWAITING_APPROVAL, "approval mode is on"
                elif age > max_age:
                    status = AllocationStatus.AWAITING_APPROVAL
                    hold_reason = (
                        f"seen {int(age.total_seconds())} s after it was placed "
                        f"(MAX_EVENT_AGE {int(max_age.total_seconds())} s)"
                    )
                alloc = Allocation.objects.create(
                    master=master,
                    tick=tick,
                    group_key=group_key if ev.kind == "open" else f"{group_key}c",
                    kind=AllocationKind.OPEN if ev.kind == "open" else AllocationKind.CLOSE,
                    status=status,
                    exchange=ev.exchange,
                    tradingsymbol=ev.tradingsymbol,
                    product=ev.product,
                    side=ev.side.value,
                    order_type=ev.order_type.value if mode == "order" else OrderType.MARKET.value,
                    validity=ev.validity,
                    price=ev.price if mode == "order" else Decimal("0"),
                    trigger_price=ev.trigger_price if mode == "order" else Decimal("0"),
                    master_quantity=ev.quantity,
                    master_position_before=ev.position_before,
                    master_seen_at=seen_at,
                    reason="; ".join(x for x in (plan.get("reason", ""), hold_reason) if x),
                    **{k: v for k, v in plan.items() if k != "reason"},
                )
                alloc.master_orders.set([orders_by_id[oid] for oid in ev.order_ids if oid in orders_by_id])
                ReplicationEvent.objects.create(
                    kind="allocation_created" if status == AllocationStatus.PLANNED else "allocation_held",
                    account=master,
                    allocation=alloc,
                    message=_describe(alloc) + (f" — held: {hold_reason}" if hold_reason else ""),
                    data={
                        "fraction": str(alloc.fraction) if alloc.fraction is not None else None,
                        "exit_ratio": str(alloc.exit_ratio) if alloc.exit_ratio is not None else None,
                        "margin_source": alloc.margin_source,
                    },
                )
                result.allocations += 1
            result.events += len(events)

    def _plan_events(
        self,
        master: Account,
        client: BrokerClient,
        events: list[MasterEvent],
        prev: MarginSnapshot | None,
        used_now: Decimal,
        result: TickResult,
        prefetched: Prefetched | None = None,
        funds_now: MarginSnapshot | None = None,
    ) -> list[dict[str, Any] | None]:
        """The allocation decision per event: fraction for the opening group, exit ratio for closes."""
        plans: list[dict[str, Any] | None] = []
        opening: list[tuple[int, MasterEvent, int, int | None]] = []
        for i, ev in enumerate(events):
            inst = self.instruments.get(client, InstrumentKey(ev.exchange, ev.tradingsymbol))
            if inst is None or inst.lot_size <= 0:
                why = "unknown instrument" if inst is None else "missing lot size"
                result.errors.append(f"{ev.exchange}:{ev.tradingsymbol}: {why}; not replicated")
                ReplicationEvent.objects.create(
                    kind="event_skipped",
                    account=master,
                    message=f"master {ev.side} {ev.quantity} {ev.exchange}:{ev.tradingsymbol}: {why}; "
                    "nothing placed",
                    data={"order_ids": ev.order_ids, "reason": why},
                )
                plans.append(None)
                continue
            if ev.quantity % inst.lot_size:
                why = f"quantity {ev.quantity} is not a whole number of lots of {inst.lot_size}"
                result.errors.append(f"{ev.exchange}:{ev.tradingsymbol}: {why}")
                ReplicationEvent.objects.create(
                    kind="event_skipped", account=master, message=why, data={"order_ids": ev.order_ids}
                )
                plans.append(None)
                continue
            lots = ev.quantity // inst.lot_size
            base: dict[str, Any] = {
                "lot_size": inst.lot_size,
                "master_lots": lots,
                "freeze_quantity": inst.freeze_quantity,
            }
            if ev.kind == "close":
                r = Decimal(ev.quantity) / Decimal(abs(ev.position_before))
                base.update(
                    exit_ratio=ratio(min(r, Decimal(1))),
                    unit_lots=1,
                    reference_price=ev.price,
                    reason="master flat: children exit everything" if ev.master_flat_after else "",
                )
                plans.append(base)
            else:
                plans.append(base)
                opening.append((i, ev, lots, inst.freeze_quantity))
        if opening:
            self._plan_opening_group(client, plans, opening, prev, used_now, result, prefetched, funds_now)
        return plans

    def _plan_opening_group(
        self,
        client: BrokerClient,
        plans: list[dict[str, Any] | None],
        opening: list[tuple[int, MasterEvent, int, int | None]],
        prev: MarginSnapshot | None,
        used_now: Decimal,
        result: TickResult,
        prefetched: Prefetched | None = None,
        funds_now: MarginSnapshot | None = None,
    ) -> None:
        asked, reads = calculator_reads(client, [ev for _, ev, _, _ in opening])
        if prefetched is not None and prefetched[0] == asked:
            answers = prefetched[1]
        else:
            answers = read_together(self._fanout(), reads)
        reqs = asked.requests
        margins = answers["margins"]
        if isinstance(margins, BrokerError):
            estimates = [Decimal("0")] * len(reqs)
            result.errors.append(f"order-margin calculator unavailable: {margins}")
        else:
            estimates = [e.total for e in margins]
        group_estimate: Decimal | None = None
        basket = answers.get("basket")
        if isinstance(basket, BrokerError):
            result.errors.append(f"basket-margin calculator unavailable: {basket}")
        elif basket is not None:
            group_estimate = basket.total
        prices: dict[InstrumentKey, Decimal] = {}
        ltp = answers.get("ltp")
        if isinstance(ltp, BrokerError):
            result.errors.append(f"LTP unavailable for order-value caps: {ltp}")
        elif ltp is not None:
            prices = ltp
        legs = [
            Leg(
                ev.exchange,
                ev.tradingsymbol,
                ev.product,
                ev.side.value,
                lots,
                plans[i]["lot_size"],  # type: ignore[index]
                ev.price or prices.get(InstrumentKey(ev.exchange, ev.tradingsymbol), Decimal("0")),
                order_margin=est,
                freeze_quantity=freeze,
            )
            for (i, ev, lots, freeze), est in zip(opening, estimates, strict=True)
        ]
        if prev is not None:
            capital = prev.capital if prev.capital > 0 else used_now + prev.available_margin
            delta_u = used_now - prev.used_margin
        elif funds_now is not None:
            # First look (first deploy, a new master, events seen late): no ΔU across the tick, so
            # the calculator's figure is the margin, and the master's capital is the funds just
            # read, U + A (margin moves from A to U as the order fills; the sum does not).
            capital, delta_u = funds_now.capital, Decimal("0")
        else:
            result.errors.append("opening group not sized: no reading of the master's capital")
            for i, _, _, _ in opening:
                plans[i] = None
            return
        try:
            plan = plan_group(
                legs=legs, master_capital=capital, delta_u=delta_u, group_estimate=group_estimate
            )
        except ValueError as exc:
            result.errors.append(f"opening group not sized: {exc}")
            for i, _, _, _ in opening:
                plans[i] = None
            return
        for (i, _, _, _), leg, leg_margin, unit in zip(
            opening, legs, paise_shares(plan.attribution.leg_margins), plan.unit_lots, strict=True
        ):
            p = plans[i]
            assert p is not None  # set above for every opening event
            p.update(
                master_capital=capital,
                attributed_margin=leg_margin,
                reference_price=leg.price,
                margin_source=plan.attribution.source.value,
                fraction=ratio(plan.fraction),
                unit_lots=unit,
                reason=(
                    ""
                    if plan.attribution.source != MarginSource.CALCULATOR
                    else plan.attribution.reason
                    if prev is not None
                    else "first look at this master (no snapshot of its margins from just before): "
                    f"the calculator's {rupees(plan.attribution.group_margin)}, capital {rupees(capital)}"
                ),
            )

    def _upsert_master_orders(self, master: Account, diff: BookDiff, now: datetime) -> None:
        new = [
            _master_order(master, o, now) for o in [*diff.new, *diff.rejected, *(o for o, _ in diff.ignored)]
        ]
        MasterOrder.objects.bulk_create(new, ignore_conflicts=True, batch_size=500)
        if diff.changed:
            rows = {
                mo.broker_order_id: mo
                for mo in MasterOrder.objects.filter(
                    account=master, broker_order_id__in=[o.order_id for o in diff.changed]
                )
            }
            # An order-type change (LIMIT -> MARKET) is a modification; the known orders `diff_book`
            # compared carried no type, the stored rows do.
            note_type_changes(
                diff,
                {mo.broker_order_id: _known(mo) for mo in rows.values()},
            )
            for o in diff.changed:
                mo = rows[o.order_id]
                mo.order_type = o.order_type.value
                mo.quantity, mo.price, mo.trigger_price = o.quantity, o.price, o.trigger_price
                mo.filled_quantity, mo.average_price = o.filled_quantity, o.average_price
                mo.status, mo.status_message = o.status.value, o.status_message[:255]
                if o.status == OrderStatus.COMPLETE and mo.filled_at is None:
                    mo.filled_at = now
            MasterOrder.objects.bulk_update(
                rows.values(),
                [
                    "order_type",
                    "quantity",
                    "price",
                    "trigger_price",
                    "filled_quantity",
                    "average_price",
                    "status",
                    "status_message",
                    "filled_at",
                    "updated_at",
                ],
            )

    def _store_master_positions(
        self,
        master: Account,
        after: dict[tuple[str, str, str], int],
        stored: dict[tuple[str, str, str], int],
        *,
        touch: bool = False,
    ) -> None:
        """The master's positions after this tick's fills (inside the transaction that records
        the orders those fills belong to: the next tick adds only fills it has not seen).
        `touch`: every row is rewritten (a fresh reading: the rows hold for today)."""
        changed = {k: q for k, q in after.items() if k in stored and (touch or stored[k] != q)}
        for (exchange, symbol, product), quantity in changed.items():
            MasterPosition.objects.filter(
                account=master, exchange=exchange, tradingsymbol=symbol, product=product
            ).update(quantity=quantity, updated_at=timezone.now())
        MasterPosition.objects.bulk_create(
            [
                MasterPosition(account=master, exchange=k[0], tradingsymbol=k[1], product=k[2], quantity=q)
                for k, q in after.items()
                if k not in stored
            ],
            ignore_conflicts=True,
        )

    # --- step 4: modifications and cancellations ----------------------------------------------

    def _propagate_changes(self, master: Account, diff: BookDiff, replicator: Replicator) -> None:
        changed_ids = [m.order.order_id for m in diff.modified] + [o.order_id for o, _ in diff.cancelled]
        allocs = list(
            Allocation.objects.filter(master=master, master_orders__broker_order_id__in=changed_ids)
            .prefetch_related("master_orders")
            .distinct()
        )
        if not allocs:
            return
        book = {m.order.order_id: m.order for m in diff.modified}
        book.update({o.order_id: o for o, _ in diff.cancelled})
        mappings = list(
            OrderMapping.objects.filter(
                allocation__in=allocs,
                status__in=(MappingStatus.OPEN, MappingStatus.PLANNED),
            )
            .select_related("child", "allocation")
            .defer(*CHILD_SECRETS)
        )
        by_alloc: dict[int, list[OrderMapping]] = defaultdict(list)
        for m in mappings:
            by_alloc[m.allocation_id].append(m)
        rows = allocator.child_rows({m.child_id for m in mappings})
        to_cancel: list[OrderMapping] = []
        to_withdraw: list[OrderMapping] = []
        to_modify: list[tuple[OrderMapping, dict[str, Any]]] = []
        closing_part = _closing_parts(allocs)
        for alloc in allocs:
            linked = list(alloc.master_orders.all())
            # What the linked master orders now ask for, in the allocation's direction (a netted
            # allocation links orders of both sides; a cancelled order counts only what filled).
            new_total = 0
            for mo in linked:
                o = book.get(mo.broker_order_id)
                if o is None:
                    quantity = mo.quantity
                elif o.status.is_final:
                    quantity = o.filled_quantity
                else:
                    quantity = o.quantity
                new_total += quantity if mo.side == alloc.side else -quantity
            # An order that crossed zero feeds two allocations: the close takes up to the position
            # it closes, the open only the rest (never the whole order each).
            if alloc.kind == AllocationKind.CLOSE and alloc.master_position_before:
                new_total = min(new_total, abs(alloc.master_position_before))
            elif alloc.kind == AllocationKind.OPEN:
                new_total -= closing_part.get(alloc.pk, 0)
            new_total = max(new_total, 0)
            lead = next((book[mo.broker_order_id] for mo in linked if mo.broker_order_id in book), None)
            for m in by_alloc.get(alloc.pk, []):
                lots = m.lots
                if new_total != alloc.master_quantity and alloc.master_quantity:
                    lots = (m.lots * new_total) // alloc.master_quantity
                    if lots > m.lots:
                        # An exit grows through the entitlement (the convergence stage sends what
                        # is owed, never more than held); an entry grows only within the child's caps.
                        lots = (
                            m.lots
                            if alloc.kind != AllocationKind.OPEN
                            else capped_lots(lots, m, alloc, rows.get(m.child_id), lead)
                        )
                new_qty = lots * alloc.lot_size if m.slice_no == 0 else m.quantity
                if new_total == 0 or new_qty <= m.filled_quantity:
                    (to_cancel if m.status == MappingStatus.OPEN else to_withdraw).append(m)
                    continue
                kwargs: dict[str, Any] = {}
                # The master made its order MARKET (LIMIT or SL -> MARKET, SL -> SL-M), perhaps
                # filling at once: the child's order follows, whether the master's is open or done.
                to_type = None
                if lead is not None and lead.order_type != m.order_type:
                    if lead.order_type == OrderType.MARKET and m.order_type != OrderType.MARKET:
                        to_type = OrderType.MARKET
                    elif lead.order_type == OrderType.SLM and m.order_type == OrderType.SL:
                        to_type = OrderType.SLM
                if to_type is not None:
                    kwargs["order_type"] = to_type
                child_type = to_type or m.order_type
                if lead is not None and (lead.status.is_open or to_type is not None):
                    if lead.price != m.price and child_type in (OrderType.LIMIT, OrderType.SL):
                        kwargs["price"] = lead.price
                    if lead.trigger_price != m.trigger_price and child_type in (
                        OrderType.SL,
                        OrderType.SLM,
                    ):
                        kwargs["trigger_price"] = lead.trigger_price
                if new_qty != m.quantity:
                    kwargs["quantity"] = new_qty
                if kwargs:
                    if m.status == MappingStatus.OPEN:
                        to_modify.append((m, kwargs))
                    else:
                        for k, v in kwargs.items():
                            setattr(m, k, v)
                        fields = [*kwargs.keys()]
                        if kwargs.get("order_type") == OrderType.MARKET:  # a MARKET order has no price
                            m.price, m.trigger_price = Decimal(0), Decimal(0)
                            fields += ["price", "trigger_price"]
                        elif kwargs.get("order_type") == OrderType.SLM:
                            m.price = Decimal(0)
                            fields.append("price")
                        m.save(update_fields=[*dict.fromkeys(fields), "updated_at"])
            if new_total != alloc.master_quantity:
                Allocation.objects.filter(pk=alloc.pk).update(master_quantity=new_total)
                # The entitlement of every child in the instrument moves with the allocation: the
                # convergence stage follows each of them (rows made for the children of this one).
                with transaction.atomic():
                    allocator.entitlements_unsettle(
                        {
                            (cid, alloc.exchange, alloc.tradingsymbol, alloc.product): alloc.lot_size
                            for cid in OrderMapping.objects.filter(allocation=alloc)
                            .values_list("child_id", flat=True)
                            .distinct()
                        }
                    )
                    Entitlement.objects.filter(
                        exchange=alloc.exchange, tradingsymbol=alloc.tradingsymbol, product=alloc.product
                    ).update(settled=False)
        if to_withdraw:
            with transaction.atomic():
                lease_check(replicator.lease)
                for m in to_withdraw:
                    m.set_status(MappingStatus.CANCELLED)
                    m.reason, m.reason_code, m.finished_at = (
                        "master order cancelled before it was sent",
                        "master_cancelled",
                        timezone.now(),
                    )
                OrderMapping.objects.bulk_update(
                    to_withdraw, ["status", "reason", "reason_code", "finished_at"]
                )
                ReplicationEvent.objects.bulk_create(
                    ReplicationEvent(
                        kind="intent_withdrawn",
                        account_id=m.child_id,
                        allocation_id=m.allocation_id,
                        mapping_id=m.pk,
                        message=f"{m.tag} withdrawn: master order cancelled",
                    )
                    for m in to_withdraw
                )
        if to_modify:
            replicator.modify_open(to_modify, reason="master order modified")
        if to_cancel:
            replicator.cancel_open(to_cancel, reason="master order cancelled")

    def _convert_filled_mirrors(self, replicator: Replicator) -> int:
        """DESIGN §3.5, policy `market_after_seconds`: see `replication.pending`."""
        due = mirrors_due_for_market(now=timezone.now())
        if not due:
            return 0
        allowed = self.market_retry.take([m.pk for m, _ in due])
        changes = [(m, {"order_type": OrderType.MARKET}) for m, _ in due if m.pk in allowed]
        if not changes:
            return 0
        return replicator.modify_open(
            changes,
            reason="master order filled; open mirror converted to MARKET (policy market_after_seconds)",
        )

    # --- step 5: child intents ------------------------------------------------------------------

    def _size_pending(self, lease: Lease, replicator: Replicator, control: EngineControl) -> int:
        pending = list(
            Allocation.objects.filter(
                sized=False, status__in=(AllocationStatus.PLANNED, AllocationStatus.AWAITING_APPROVAL)
            ).order_by("id")
        )
        if not pending:
            return 0
        closes = [a for a in pending if a.kind == AllocationKind.CLOSE]
        if closes:
            allocator.prepare_exits(closes, replicator)
        groups: dict[str, list[Allocation]] = defaultdict(list)
        for a in pending:
            groups[a.group_key].append(a)
        created = 0
        for group in groups.values():
            created += allocator.create_intents(group, lease=lease, control=control, replicator=replicator)
            failpoint("after_intent_commit")
        return created


def _known(mo: MasterOrder) -> KnownOrder:
    """What the engine recorded about a master order, as the book diff compares it."""
    return KnownOrder(
        mo.broker_order_id,
        mo.quantity,
        mo.price,
        mo.trigger_price,
        mo.filled_quantity,
        mo.status,
        mo.order_type,
    )


def capped_lots(
    lots: int, m: OrderMapping, alloc: Allocation, child: allocator.ChildRow | None, lead: Order | None
) -> int:
    """A scaled-up entry within the child's caps (DESIGN §3.3 step 7) and its available margin:
    the extra lots must fit the margin the child has free, at the master's margin per lot."""
    if child is None:
        return m.lots  # not an eligible child any more: never grown
    lot = max(alloc.lot_size, 1)
    limit = lots
    if child.max_lots_per_order is not None:
        limit = min(limit, child.max_lots_per_order)
    if child.max_quantity is not None:
        limit = min(limit, child.max_quantity // lot)
    price = (lead.price if lead is not None and lead.price else None) or alloc.reference_price or alloc.price
    if child.max_order_value is not None and price:
        limit = min(limit, int(child.max_order_value // (price * lot)))
    if alloc.attributed_margin and alloc.master_lots:
        per_lot = alloc.attributed_margin / alloc.master_lots
        available = child.snap_available or Decimal(0)
        limit = min(limit, m.lots + int(max(available, Decimal(0)) // per_lot))
    return max(min(limit, lots), min(m.lots, lots))


def _closing_parts(allocs: list[Allocation]) -> dict[int, int]:
    """For each opening allocation whose master orders also feed a closing one of the same side
    (an order that crossed zero), the quantity that went to closing: the position it closed."""
    closes_by_order: dict[int, dict[int, Allocation]] = defaultdict(dict)
    for a in allocs:
        if a.kind == AllocationKind.CLOSE:
            for mo in a.master_orders.all():
                closes_by_order[mo.pk][a.pk] = a
    parts: dict[int, int] = {}
    for a in allocs:
        if a.kind != AllocationKind.OPEN:
            continue
        closes = {
            c.pk: c
            for mo in a.master_orders.all()
            for c in closes_by_order[mo.pk].values()
            if c.side == a.side
        }
        if closes:
            parts[a.pk] = sum(abs(c.master_position_before) for c in closes.values())
    return parts


@dataclass(frozen=True)
class CalculatorAsk:
    """What the calculator reads of an opening group ask: the orders, and the MARKET legs' prices."""

    requests: tuple[OrderRequest, ...]
    market: tuple[InstrumentKey, ...]


# The calculator reads made together with the positions read: what they asked, and the answers.
Prefetched = tuple[CalculatorAsk, dict[str, Any]]


def calculator_reads(
    client: BrokerClient, events: Sequence[MasterEvent]
) -> tuple[CalculatorAsk, dict[str, Callable[[], Any]]]:
    """The broker reads an opening group needs: each order's margin, the basket's (legs together:
    it sees the hedge benefit the single orders miss) and the LTP of MARKET legs (order-value caps)."""
    ask = CalculatorAsk(
        requests=tuple(
            OrderRequest(
                ev.exchange,
                ev.tradingsymbol,
                ev.side,
                ev.quantity,
                Product(ev.product),
                ev.order_type,
                price=ev.price or None,
                trigger_price=ev.trigger_price or None,
            )
            for ev in events
        ),
        market=tuple(InstrumentKey(ev.exchange, ev.tradingsymbol) for ev in events if not ev.price),
    )
    if not ask.requests:
        return ask, {}
    reqs = list(ask.requests)
    reads: dict[str, Callable[[], Any]] = {"margins": lambda: client.order_margins(reqs)}
    if len(reqs) > 1:
        reads["basket"] = lambda: client.basket_margin(reqs)
    if ask.market:
        reads["ltp"] = lambda: client.ltp(list(ask.market))
    return ask, reads


def read_together(fanout: FanOut, reads: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run independent broker reads concurrently in the pool (inline when it has no workers);
    each answer is the read's value or the BrokerError it raised."""

    def read(name: str) -> list[tuple[str, Any]]:
        try:
            return [(name, reads[name]())]
        except BrokerError as exc:
            return [(name, exc)]

    return dict(fanout.map(read, list(reads)))


def _moved(
    start: dict[tuple[str, str, str], int], *deltas: dict[tuple[str, str, str], int]
) -> dict[tuple[str, str, str], int]:
    out = dict(start)
    for delta in deltas:
        for key, qty in delta.items():
            out[key] = out.get(key, 0) + qty
    return out


def _master_since(master: Account) -> datetime | None:
    """When `master` last became master (its promotion's audit row), or None."""
    return (
        ReplicationEvent.objects.filter(kind="account.master_promoted", account=master)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)
        .first()
    )


def _master_order(master: Account, o: Order, now: datetime) -> MasterOrder:
    return MasterOrder(
        account=master,
        broker_order_id=o.order_id,
        exchange=o.exchange,
        tradingsymbol=o.tradingsymbol,
        product=o.product.value,
        side=o.side.value,
        order_type=o.order_type.value,
        variety=o.variety,
        validity=o.validity.value,
        quantity=o.quantity,
        price=o.price,
        trigger_price=o.trigger_price,
        filled_quantity=o.filled_quantity,
        average_price=o.average_price,
        status=o.status.value,
        status_message=o.status_message[:255],
        tag=o.tag[:32],
        placed_at=o.placed_at,
        first_seen_at=now,
        filled_at=now if o.status == OrderStatus.COMPLETE else None,
    )


def _describe(a: Allocation) -> str:
    what = f"{a.kind} {a.side} {a.master_quantity} {a.exchange}:{a.tradingsymbol} ({a.master_lots} lots)"
    if a.kind == AllocationKind.OPEN and a.fraction is not None:
        return (
            f"{what}: fraction {a.fraction:.6f} of capital, margin {a.attributed_margin} "
            f"via {a.margin_source}"
        )
    if a.exit_ratio is not None:
        return f"{what}: exit ratio {a.exit_ratio:.6f}"
    return what


def run_tick(orchestrator: Orchestrator | None = None) -> TickResult:
    """One orchestrator tick. Tests call this; `run_orchestrator` loops it."""
    own = orchestrator is None
    orch = orchestrator or Orchestrator()
    try:
        return orch.run_tick()
    finally:
        if own:
            orch.close()
