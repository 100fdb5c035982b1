"""The replicator: committed intents in, broker orders out, outcomes written back in batches.

Rules (DESIGN §4.1, §4.2):
- an intent (`OrderMapping` PLANNED, unique tag) is committed before any broker call, and claimed
  (PLANNED -> SENDING) by a conditional update in a committed transaction before it is sent;
- broker calls run concurrently across children in a bounded pool, never inside a transaction;
  each child's calls go through its own rate limiter; one child's trouble never blocks another;
- a write whose outcome is unknown becomes UNKNOWN and is looked up by tag, never re-sent blindly;
  only an order proven absent (not in the book after a grace period) is sent again;
- every engine write runs in a transaction that first checks the lease epoch.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, IntegerField
from django.db.models.functions import Mod
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus
from brokers.base import BrokerClient
from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    InputRejected,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    TokenExpired,
)
from brokers.types import Order, OrderRequest, OrderStatus, OrderType, Product, Side, Validity
from replication.bulk import insert_rows, update_rows
from replication.clients import CHILD_SECRETS, ClientCache
from replication.failpoints import failpoint
from replication.fanout import FanOut
from replication.gate import Action, Switches, Verdict, action_for, child_switches, decide
from replication.lease import Lease, lease_check
from replication.models import (
    Allocation,
    AllocationStatus,
    MappingStatus,
    OrderMapping,
    ReplicationEvent,
)
from replication.ratelimit import DailyBudgetExhausted, LimiterRegistry

logger = logging.getLogger(__name__)

ACCEPTED = frozenset({MappingStatus.OPEN, MappingStatus.FILLED})
NOT_ACCEPTED = frozenset(
    {
        MappingStatus.REJECTED,
        MappingStatus.FAILED,
        MappingStatus.CANCELLED,
        MappingStatus.SKIPPED,
        MappingStatus.DRY_RUN,
    }
)
MAX_SEND_ATTEMPTS = 3

# What sending and writing back need: loading only these keeps a thousand-child dispatch cheap.
MAPPING_FIELDS = (
    "allocation",
    "child",
    "slice_no",
    "wave",
    "tag",
    "status",
    "exchange",
    "tradingsymbol",
    "product",
    "side",
    "order_type",
    "validity",
    "price",
    "trigger_price",
    "lots",
    "quantity",
    "reason_code",
    "reason",
    "broker_order_id",
    "broker_status",
    "filled_quantity",
    "average_price",
    "attempts",
    "epoch",
    "created_at",
    "sent_at",
    "acked_at",
    "finished_at",
    "latency_ms",
    "updated_at",
)
SEND_FIELDS = (
    *MAPPING_FIELDS,
    *(f"child__{name}" for name in ("broker", "broker_user_id", "proxy_url", "updated_at", "status")),
    *(f"allocation__{name}" for name in ("kind", "group_key", "master_seen_at", "status")),
)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


@dataclass(frozen=True, slots=True)
class Shard:
    """Children whose id mod `count` is `index`."""

    index: int
    count: int


@dataclass(slots=True)
class Outcome:
    """What happened to one mapping during a send or a look-up (computed off the database)."""

    mapping_id: int
    status: str
    broker_order_id: str = ""
    broker_status: str = ""
    filled_quantity: int | None = None
    average_price: Decimal | None = None
    reason_code: str = ""
    reason: str = ""
    acked_at: datetime | None = None
    event: str = ""
    error: BrokerError | None = None


@dataclass(slots=True)
class DispatchReport:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0
    latencies_ms: list[int] = field(default_factory=list)
    send_started: float | None = None
    last_send_done: float | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)

    def merge(self, other: DispatchReport) -> None:
        self.sent += other.sent
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.failed += other.failed
        self.unknown += other.unknown
        self.deferred += other.deferred
        self.latencies_ms.extend(other.latencies_ms)
        for name, ms in other.phases_ms.items():
            self.phases_ms[name] = self.phases_ms.get(name, 0.0) + ms
        if other.send_started is not None:
            self.send_started = min(filter(None, [self.send_started, other.send_started]))
        if other.last_send_done is not None:
            self.last_send_done = max(filter(None, [self.last_send_done, other.last_send_done]))


# What a failed order write means for its intent (DESIGN §4.2), most specific first.
SEND_ERRORS: tuple[tuple[type[BrokerError], str, str], ...] = (
    (RateLimited, MappingStatus.PLANNED, "send_deferred"),  # nothing placed: send again later
    (BrokerUnavailable, MappingStatus.PLANNED, "send_deferred"),  # refused before sending
    (OutcomeUnknown, MappingStatus.UNKNOWN, "send_unknown"),  # may exist: look it up by tag
    (TokenExpired, MappingStatus.FAILED, "send_failed"),
    (OrderRejected, MappingStatus.REJECTED, "send_rejected"),
    (InputRejected, MappingStatus.REJECTED, "send_rejected"),
)


def send_error_outcome(exc: BrokerError) -> tuple[str, str]:
    """(mapping status, event kind) for an error raised by an order write.

    An error we cannot classify came after the write was sent, so the order may exist: UNKNOWN.
    """
    for kind, status, event in SEND_ERRORS:
        if isinstance(exc, kind):
            return status, event
    return MappingStatus.UNKNOWN, "send_unknown"


def mapping_request(m: OrderMapping) -> OrderRequest:
    order_type = OrderType(m.order_type)
    return OrderRequest(
        exchange=m.exchange,
        tradingsymbol=m.tradingsymbol,
        side=Side(m.side),
        quantity=m.quantity,
        product=Product(m.product),
        order_type=order_type,
        price=m.price if order_type in (OrderType.LIMIT, OrderType.SL) else None,
        trigger_price=m.trigger_price if order_type in (OrderType.SL, OrderType.SLM) else None,
        validity=Validity(m.validity),
        tag=m.tag,
    )


def status_from_order(order: Order) -> str:
    if order.status == OrderStatus.COMPLETE:
        return MappingStatus.FILLED
    if order.status == OrderStatus.CANCELLED:
        return MappingStatus.CANCELLED
    if order.status == OrderStatus.REJECTED:
        return MappingStatus.REJECTED
    return MappingStatus.OPEN


class Replicator:
    """Sends committed intents for one leader (lease) and writes the outcomes back."""

    def __init__(
        self,
        *,
        lease: Lease,
        clients: ClientCache | None = None,
        limiters: LimiterRegistry | None = None,
        workers: int | None = None,
        now: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.lease = lease
        self.clients = clients or ClientCache()
        self.limiters = limiters or LimiterRegistry()
        self.fanout = FanOut(workers)
        self.now = now
        self.unknown_grace = timedelta(seconds=_setting("UNKNOWN_GRACE_SECONDS", 30))
        self.breaker_threshold = int(_setting("BREAKER_THRESHOLD", 3))

    # --- concurrency ---------------------------------------------------------------------------

    def _map(self, fn: Callable[[Any], list[Outcome]], items: Sequence[Any]) -> list[Outcome]:
        return self.fanout.map(fn, items)

    def close(self) -> None:
        self.fanout.close()

    # --- dispatch ------------------------------------------------------------------------------

    def dispatch(
        self, *, halted: bool = False, only: Iterable[int] | None = None, shard: Shard | None = None
    ) -> DispatchReport:
        """Send every dispatchable PLANNED intent: buy legs first, then the sell legs they hedge.

        Every intent passes the send gate (`replication.gate`) as it is claimed, whoever sends it
        (this tick, a queue-mode shard task, a later tick): `halted` only saves the reads.
        With `shard` only the children of that shard (child id mod count) are sent: the queue
        mode's workers each take one shard, so a child's orders always stay in one worker's hands.
        """
        report = DispatchReport()
        if halted:
            return report
        t0 = time.perf_counter()
        waves = self._planned(only=only, shard=shard)
        report.phases_ms["load"] = (time.perf_counter() - t0) * 1000
        if waves[0]:
            report.merge(self._send_wave(waves[0]))
        if waves[1]:
            # A sell leg goes only once its buy legs are in the child's book and not rejected
            # (DESIGN §3.3 step 6): a place call's id is not that, brokers reject after a 200.
            unconfirmed = self._unconfirmed_buy_legs(waves[1])
            if unconfirmed:
                self.follow_up(children=unconfirmed, recover=False)
            ready = self._sell_legs_ready(waves[1])
            if ready:
                report.merge(self._send_wave(ready))
        return report

    def planned_shards(self, count: int) -> list[int]:
        """The shards (child id mod count) that have intents ready to send."""
        return sorted(
            {
                int(value)
                for value in OrderMapping.objects.filter(
                    status=MappingStatus.PLANNED,
                    allocation__status__in=(AllocationStatus.PLANNED, AllocationStatus.DISPATCHED),
                )
                .annotate(shard=Mod("child_id", count, output_field=IntegerField()))
                .values_list("shard", flat=True)
            }
        )

    def _planned(
        self, *, only: Iterable[int] | None, shard: Shard | None = None
    ) -> tuple[list[OrderMapping], list[OrderMapping]]:
        qs = (
            OrderMapping.objects.filter(
                status=MappingStatus.PLANNED,
                allocation__status__in=(AllocationStatus.PLANNED, AllocationStatus.DISPATCHED),
            )
            .select_related("child", "allocation")
            .only(*SEND_FIELDS)
            .order_by("id")
        )
        if only is not None:
            qs = qs.filter(allocation_id__in=list(only))
        if shard is not None:
            qs = qs.annotate(shard=Mod("child_id", shard.count, output_field=IntegerField())).filter(
                shard=shard.index
            )
        mappings = list(qs)
        return [m for m in mappings if m.wave == 0], [m for m in mappings if m.wave != 0]

    def _buy_leg_statuses(self, mappings: list[OrderMapping]) -> dict[tuple[str, int], list[tuple[str, str]]]:
        groups = {m.allocation.group_key for m in mappings}
        siblings: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
        for group_key, child_id, status, broker_status in OrderMapping.objects.filter(
            allocation__group_key__in=groups, wave=0
        ).values_list("allocation__group_key", "child_id", "status", "broker_status"):
            siblings[(group_key, child_id)].append((status, broker_status))
        return siblings

    def _unconfirmed_buy_legs(self, mappings: list[OrderMapping]) -> set[int]:
        """Children whose buy legs were accepted by a place call but not yet seen in their book."""
        siblings = self._buy_leg_statuses(mappings)
        return {
            m.child_id
            for m in mappings
            if any(
                s == MappingStatus.OPEN and not b
                for s, b in siblings.get((m.allocation.group_key, m.child_id), [])
            )
        }

    def _sell_legs_ready(self, mappings: list[OrderMapping]) -> list[OrderMapping]:
        # Sell legs go only once every buy leg of the same group and child is in the child's
        # book (filled, or open with the broker's own status) and not rejected; if one was not
        # accepted, the sell legs are withdrawn with the reason.
        siblings = self._buy_leg_statuses(mappings)
        ready, blocked = [], []
        for m in mappings:
            statuses = siblings.get((m.allocation.group_key, m.child_id), [])
            if any(s in NOT_ACCEPTED or b == OrderStatus.REJECTED for s, b in statuses):
                blocked.append(m)
            elif all(s == MappingStatus.FILLED or (s == MappingStatus.OPEN and b) for s, b in statuses):
                ready.append(m)
        if blocked:
            self._write_outcomes(
                [
                    Outcome(
                        m.pk,
                        MappingStatus.CANCELLED,
                        reason_code="hedge_leg_failed",
                        reason="the buy leg that hedges this sell leg was not accepted; sell leg withdrawn",
                        event="group_incomplete",
                    )
                    for m in blocked
                ],
                by_id={m.pk: m for m in blocked},
            )
        return ready

    def _send_wave(self, mappings: list[OrderMapping]) -> DispatchReport:
        report = DispatchReport()
        t0 = time.perf_counter()
        now = self.now()
        # The claim's lease check extends the lease past this instant, so no other leader can take
        # over before it: orders may go until then, and after it are left for whoever leads next.
        send_until = timezone.now() + self.lease.ttl
        with transaction.atomic():
            lease_check(self.lease)
            # The send gate, read now: the switches may have changed since the intents were made.
            engine = Switches.read()
            children = child_switches({m.child_id for m in mappings})
            held: list[tuple[OrderMapping, Verdict]] = []
            passing: list[OrderMapping] = []
            for m in mappings:
                sw = children.get(m.child_id)
                verdict = (
                    decide(action_for(m.allocation.kind), engine, sw)
                    if sw is not None
                    else Verdict(False, code="no_account", reason="the account no longer exists")
                )
                (passing.append(m) if verdict.send else held.append((m, verdict)))
            if held:
                self._hold(held)
            mappings = passing
            ids = [m.pk for m in mappings]
            OrderMapping.objects.filter(pk__in=ids, status=MappingStatus.PLANNED).update(
                status=MappingStatus.SENDING,
                epoch=self.lease.epoch,
                sent_at=now,
                attempts=F("attempts") + 1,
            )
            claimed = set(
                OrderMapping.objects.filter(
                    pk__in=ids, status=MappingStatus.SENDING, epoch=self.lease.epoch
                ).values_list("pk", flat=True)
            )
            Allocation.objects.filter(
                pk__in={m.allocation_id for m in mappings}, status=AllocationStatus.PLANNED
            ).update(status=AllocationStatus.DISPATCHED)
        by_child: dict[int, list[OrderMapping]] = defaultdict(list)
        for m in mappings:
            if m.pk in claimed:
                m.status = MappingStatus.SENDING
                m.attempts += 1
                by_child[m.child_id].append(m)
        t1 = time.perf_counter()
        self.clients.warm([ms[0].child for ms in by_child.values()])
        report.send_started = time.perf_counter()
        send = functools.partial(self._send_child, send_until=send_until)
        outcomes = self._map(send, list(by_child.values()))
        report.last_send_done = time.perf_counter()
        self._write_outcomes(outcomes, by_id={m.pk: m for m in mappings})
        report.phases_ms = {
            "claim": (t1 - t0) * 1000,
            "warm_clients": (report.send_started - t1) * 1000,
            "send": (report.last_send_done - report.send_started) * 1000,
            "write_back": (time.perf_counter() - report.last_send_done) * 1000,
        }
        for o in outcomes:
            report.sent += 1
            if o.status in ACCEPTED:
                report.accepted += 1
            elif o.status == MappingStatus.REJECTED:
                report.rejected += 1
            elif o.status == MappingStatus.UNKNOWN:
                report.unknown += 1
            elif o.status == MappingStatus.PLANNED:
                report.deferred += 1
            else:
                report.failed += 1
        for m in mappings:
            if m.latency_ms is not None:
                report.latencies_ms.append(m.latency_ms)
        return report

    def _hold(self, held: Sequence[tuple[OrderMapping, Verdict]]) -> None:
        """Intents the send gate stops at send time: never sent. An entry is skipped for good
        (entries are never chased); an exit stays owed and the convergence stage sends it once
        the child can trade. Runs inside the claim's transaction."""
        outcomes = [
            Outcome(
                m.pk,
                MappingStatus.DRY_RUN if v.dry_run else MappingStatus.SKIPPED,
                reason_code=v.code,
                reason=f"stopped at send time: {v.reason}",
                event="send_held",
            )
            for m, v in held
        ]
        by_id = {m.pk: m for m, _ in held}
        now = self.now()
        for o in outcomes:
            m = by_id[o.mapping_id]
            m.set_status(o.status)
            m.reason, m.reason_code, m.finished_at = o.reason, o.reason_code, now
        update_rows([m for m, _ in held], ["status", "reason", "reason_code", "finished_at", "updated_at"])
        self._events_for(
            outcomes, by_id, previous={m.pk: (MappingStatus.PLANNED, m.filled_quantity) for m, _ in held}
        )

    def _gate(self, mappings: Iterable[OrderMapping], action: Action) -> dict[int, Verdict]:
        """The send gate for modifications and cancels of these mappings, read now, per child."""
        engine = Switches.read()
        children = child_switches({m.child_id for m in mappings})
        return {cid: decide(action, engine, sw) for cid, sw in children.items()}

    def _send_child(
        self, mappings: list[OrderMapping], *, send_until: datetime | None = None
    ) -> list[Outcome]:
        """One child's orders for this wave, in order, through its own limiter (runs in a worker)."""
        child = mappings[0].child
        try:
            client = self.clients.get(child)
        except CredentialDecryptError as exc:
            return [
                Outcome(
                    m.pk,
                    MappingStatus.FAILED,
                    reason_code="credentials",
                    reason=str(exc),
                    event="send_failed",
                )
                for m in mappings
            ]
        limiter = self.limiters.for_account(child.pk)
        outcomes: list[Outcome] = []
        for index, m in enumerate(mappings):
            try:
                limiter.acquire()
            except DailyBudgetExhausted as exc:
                outcomes.extend(
                    Outcome(r.pk, MappingStatus.PLANNED, reason_code="rate_limited", reason=str(exc))
                    for r in mappings[index:]
                )
                break
            if send_until is not None and timezone.now() >= send_until:
                # Stalled past the lease since the claim: another leader may be recovering these
                # by tag and sending them itself. Leave them SENDING; a stale leader sends nothing.
                outcomes.extend(
                    Outcome(
                        r.pk,
                        MappingStatus.SENDING,
                        reason_code="lease_expired",
                        reason="not sent: the lease ran out between the claim and the send",
                        event="send_withheld",
                    )
                    for r in mappings[index:]
                )
                break
            outcome = self._place(client, m)
            outcomes.append(outcome)
            if isinstance(outcome.error, TokenExpired):
                # The session is dead: the remaining orders for this child cannot go either.
                outcomes.extend(
                    Outcome(
                        r.pk,
                        MappingStatus.FAILED,
                        reason_code="token_expired",
                        reason=outcome.reason,
                        event="send_failed",
                    )
                    for r in mappings[index + 1 :]
                )
                break
        return outcomes

    def _place(self, client: BrokerClient, m: OrderMapping) -> Outcome:
        try:
            order_id = client.place_order(mapping_request(m))
        except BrokerError as exc:
            status, event = send_error_outcome(exc)
            if isinstance(exc, BrokerUnavailable) and m.attempts >= MAX_SEND_ATTEMPTS:
                status = MappingStatus.FAILED  # not placed, and tried enough: surface it
            return Outcome(m.pk, status, reason_code=exc.code, reason=exc.message, error=exc, event=event)
        except Exception as exc:
            logger.exception("unexpected error placing %s", m.tag)
            return Outcome(
                m.pk,
                MappingStatus.UNKNOWN,
                reason_code="unexpected",
                reason=type(exc).__name__,
                event="send_unknown",
            )
        failpoint("after_broker_call")
        return Outcome(m.pk, MappingStatus.OPEN, broker_order_id=order_id, acked_at=self.now(), event="sent")

    # --- follow-up and recovery ----------------------------------------------------------------

    def follow_up(self, *, children: Iterable[int] | None = None, recover: bool = True) -> int:
        """Refresh non-final child orders from each child's order book; resolve unknown outcomes.

        Returns how many mappings changed.
        """
        statuses = [MappingStatus.OPEN]
        if recover:
            statuses += [MappingStatus.UNKNOWN, MappingStatus.SENDING]
        qs = (
            OrderMapping.objects.filter(status__in=statuses)
            .select_related("child", "allocation")
            .defer(*CHILD_SECRETS)
            .order_by("id")
        )
        if children is not None:
            qs = qs.filter(child_id__in=list(children))
        mappings = list(qs)
        if not mappings:
            return 0
        by_child: dict[int, list[OrderMapping]] = defaultdict(list)
        for m in mappings:
            by_child[m.child_id].append(m)
        self.clients.warm([ms[0].child for ms in by_child.values()])
        outcomes = self._map(self._look_up_child, list(by_child.values()))
        by_id = {m.pk: m for m in mappings}
        changed = [o for o in outcomes if _changes(by_id[o.mapping_id], o)]
        self._write_outcomes(changed, by_id=by_id)
        return len(changed)

    def _look_up_child(self, mappings: list[OrderMapping]) -> list[Outcome]:
        child = mappings[0].child
        # The clock is read before the book: "absent" must mean absent from a book read at least
        # the grace period after the send, however long the read itself took.
        now = self.now()
        try:
            book = self.clients.get(child).orders()
        except (BrokerError, CredentialDecryptError) as exc:
            logger.warning("order book of child %s unavailable: %s", child.pk, exc)
            if isinstance(exc, TokenExpired):
                return [Outcome(mappings[0].pk, mappings[0].status, error=exc)]
            return []
        by_tag: dict[str, list[Order]] = defaultdict(list)
        by_id: dict[str, Order] = {}
        for entry in book:
            if entry.tag:
                by_tag[entry.tag].append(entry)
            by_id[entry.order_id] = entry
        outcomes = []
        for m in mappings:
            order: Order | None = by_id.get(m.broker_order_id) if m.broker_order_id else None
            if order is None:
                found = by_tag.get(m.tag, [])
                if len(found) > 1:
                    logger.error("tag %s has %d orders at the broker", m.tag, len(found))
                order = found[0] if found else None
            if order is not None:
                outcomes.append(
                    Outcome(
                        m.pk,
                        status_from_order(order),
                        broker_order_id=order.order_id,
                        broker_status=order.status.value,
                        filled_quantity=order.filled_quantity,
                        average_price=order.average_price,
                        reason=order.status_message if order.status == OrderStatus.REJECTED else "",
                        reason_code="broker_rejected" if order.status == OrderStatus.REJECTED else "",
                        acked_at=m.acked_at or now,
                        event="found_by_tag" if m.status != MappingStatus.OPEN else "order_update",
                    )
                )
            elif m.status in (MappingStatus.UNKNOWN, MappingStatus.SENDING):
                sent_at = m.sent_at or m.created_at
                if now - sent_at >= self.unknown_grace:
                    if m.attempts >= MAX_SEND_ATTEMPTS:
                        outcomes.append(
                            Outcome(
                                m.pk,
                                MappingStatus.FAILED,
                                reason_code="absent",
                                reason=f"not at the broker after {m.attempts} attempts",
                                event="send_failed",
                            )
                        )
                    else:
                        outcomes.append(
                            Outcome(
                                m.pk,
                                MappingStatus.PLANNED,
                                reason_code="absent",
                                reason="not in the child's order book: proven absent, will send again",
                                event="absent_resend",
                            )
                        )
                elif m.status == MappingStatus.SENDING:
                    outcomes.append(
                        Outcome(
                            m.pk,
                            MappingStatus.UNKNOWN,
                            reason_code="crash_recovery",
                            reason="claimed for sending before a restart; looking it up by tag",
                            event="recovered_unknown",
                        )
                    )
        failpoint("mid_reconciliation")
        return outcomes

    def cancel_open(self, mappings: Sequence[OrderMapping], *, reason: str) -> int:
        """Cancel the open remainder of child orders at their brokers, then refresh them."""
        targets = [m for m in mappings if m.status == MappingStatus.OPEN and m.broker_order_id]
        gate = self._gate(targets, Action.CANCEL)
        by_child: dict[int, list[OrderMapping]] = defaultdict(list)
        held: list[Outcome] = []
        for m in targets:
            verdict = gate.get(m.child_id)
            if verdict is not None and verdict.send:
                by_child[m.child_id].append(m)
            else:
                why = verdict.reason if verdict else "the account no longer exists"
                held.append(Outcome(m.pk, m.status, event="cancel_held", reason=f"{reason}; not sent: {why}"))

        def cancel_child(items: list[OrderMapping]) -> list[Outcome]:
            out = []
            try:
                client = self.clients.get(items[0].child)
            except Exception as exc:  # noqa: BLE001 — one child's unreadable credentials never stop the rest
                return [Outcome(m.pk, m.status, event="cancel_failed", reason=str(exc)[:500]) for m in items]
            limiter = self.limiters.for_account(items[0].child_id)
            for m in items:
                try:
                    limiter.acquire()
                    client.cancel_order(m.broker_order_id)
                    out.append(Outcome(m.pk, m.status, event="cancel_sent", reason=reason))
                except (BrokerError, DailyBudgetExhausted) as exc:
                    out.append(Outcome(m.pk, m.status, event="cancel_failed", reason=str(exc)))
            return out

        outcomes = held + self._map(cancel_child, list(by_child.values()))
        self._write_events(outcomes, {m.pk: m for m in targets})
        if by_child:
            self.follow_up(children=by_child.keys(), recover=False)
        return sum(len(v) for v in by_child.values())

    def modify_open(self, changes: Sequence[tuple[OrderMapping, dict[str, Any]]], *, reason: str) -> int:
        """Send modifications (price, trigger, quantity, or order type MARKET) for open child orders."""
        by_child: dict[int, list[tuple[OrderMapping, dict[str, Any]]]] = defaultdict(list)
        live = [(m, kwargs) for m, kwargs in changes if m.status == MappingStatus.OPEN and m.broker_order_id]
        gate = self._gate([m for m, _ in live], Action.MODIFY)
        held: list[Outcome] = []
        for m, kwargs in live:
            verdict = gate.get(m.child_id)
            if verdict is not None and verdict.send:
                by_child[m.child_id].append((m, kwargs))
            else:
                why = verdict.reason if verdict else "the account no longer exists"
                held.append(Outcome(m.pk, m.status, event="modify_held", reason=f"{reason}; not sent: {why}"))

        def modify_child(items: list[tuple[OrderMapping, dict[str, Any]]]) -> list[Outcome]:
            try:
                client = self.clients.get(items[0][0].child)
            except Exception as exc:  # noqa: BLE001 — one child's unreadable credentials never stop the rest
                return [
                    Outcome(m.pk, m.status, event="modify_failed", reason=str(exc)[:500]) for m, _ in items
                ]
            limiter = self.limiters.for_account(items[0][0].child_id)
            out = []
            for m, kwargs in items:
                try:
                    limiter.acquire()
                    client.modify_order(m.broker_order_id, **kwargs)
                    out.append(Outcome(m.pk, m.status, event="modify_sent", reason=reason))
                except (BrokerError, DailyBudgetExhausted) as exc:
                    out.append(Outcome(m.pk, m.status, event="modify_failed", reason=str(exc)))
            return out

        outcomes = held + self._map(modify_child, list(by_child.values()))
        pairs = {m.pk: (m, kw) for m, kw in live}
        sent = [o for o in outcomes if o.event == "modify_sent"]
        with transaction.atomic():
            lease_check(self.lease)
            updates = []
            for o in sent:
                m, kwargs = pairs[o.mapping_id]
                if "price" in kwargs and kwargs["price"] is not None:
                    m.price = kwargs["price"]
                if "trigger_price" in kwargs and kwargs["trigger_price"] is not None:
                    m.trigger_price = kwargs["trigger_price"]
                if "quantity" in kwargs and kwargs["quantity"] is not None:
                    m.quantity = kwargs["quantity"]
                if kwargs.get("order_type") == OrderType.MARKET:
                    m.order_type, m.price, m.trigger_price = OrderType.MARKET, Decimal(0), Decimal(0)
                elif kwargs.get("order_type") == OrderType.SLM:
                    m.order_type, m.price = OrderType.SLM, Decimal(0)
                updates.append(m)
            update_rows(updates, ["order_type", "price", "trigger_price", "quantity", "updated_at"])
            self._events_for(outcomes, {m.pk: m for m, _ in pairs.values()})
        if by_child:
            self.follow_up(children=by_child.keys(), recover=False)
        return len(sent)

    # --- writing back --------------------------------------------------------------------------

    def _write_outcomes(self, outcomes: Sequence[Outcome], *, by_id: dict[int, OrderMapping]) -> None:
        if not outcomes:
            return
        now = self.now()
        updated: list[OrderMapping] = []
        needs_login: set[int] = set()
        failed_children: set[int] = set()
        ok_children: set[int] = set()
        # What each mapping was before this write: the audit rows say what changed (a fill, a
        # partial fill, a rejection), so they are built from the state before, not after.
        previous = {
            o.mapping_id: (by_id[o.mapping_id].status, by_id[o.mapping_id].filled_quantity) for o in outcomes
        }
        for o in outcomes:
            m = by_id[o.mapping_id]
            if isinstance(o.error, TokenExpired):
                needs_login.add(m.child_id)
            if o.status != m.status:
                if not m.can_move_to(o.status):
                    logger.error("refusing %s -> %s for %s", m.status, o.status, m.tag)
                    continue
                m.set_status(o.status)
            if o.broker_order_id:
                m.broker_order_id = o.broker_order_id
            if o.broker_status:
                m.broker_status = o.broker_status
            if o.filled_quantity is not None:
                m.filled_quantity = o.filled_quantity
            if o.average_price is not None:
                m.average_price = o.average_price
            if o.reason or o.reason_code:
                m.reason, m.reason_code = o.reason[:2000], o.reason_code
            if o.acked_at and not m.acked_at and o.status in ACCEPTED:
                m.acked_at = o.acked_at
                seen = m.allocation.master_seen_at
                m.latency_ms = max(0, int((o.acked_at - seen).total_seconds() * 1000))
            if m.is_final and not m.finished_at:
                m.finished_at = now
            if o.event in ("sent", "found_by_tag"):
                ok_children.add(m.child_id)
            elif o.event in ("send_failed", "send_rejected") and m.allocation.kind == "open":
                failed_children.add(m.child_id)
            updated.append(m)
        failpoint("before_ack_commit")
        with transaction.atomic():
            lease_check(self.lease)
            update_rows(
                updated,
                [
                    "status",
                    "broker_order_id",
                    "broker_status",
                    "filled_quantity",
                    "average_price",
                    "reason",
                    "reason_code",
                    "acked_at",
                    "latency_ms",
                    "finished_at",
                    "updated_at",
                ],
            )
            self._events_for(outcomes, by_id, previous=previous)
            self._account_effects(
                needs_login=needs_login, failed=failed_children - ok_children, ok=ok_children
            )

    def _write_events(self, outcomes: Sequence[Outcome], by_id: dict[int, OrderMapping]) -> None:
        if not outcomes:
            return
        with transaction.atomic():
            lease_check(self.lease)
            self._events_for(outcomes, by_id)

    def _events_for(
        self,
        outcomes: Sequence[Outcome],
        by_id: dict[int, OrderMapping],
        *,
        previous: dict[int, tuple[str, int]] | None = None,
    ) -> None:
        """One audit row per outcome with an event. An order update is recorded when the status or
        the filled quantity moved (fills, partial fills, rejections, cancellations) or it says why;
        `previous` is each mapping's (status, filled quantity) before the write."""
        events = []
        for o in outcomes:
            m = by_id[o.mapping_id]
            before_status, before_filled = (previous or {}).get(o.mapping_id, (m.status, m.filled_quantity))
            if not o.event:
                continue
            if o.event == "order_update":
                filled_moved = o.filled_quantity is not None and o.filled_quantity != before_filled
                if o.status == before_status and not filled_moved and not o.reason:
                    continue
            data: dict[str, Any] = {
                "status": o.status,
                "broker_order_id": o.broker_order_id,
                "code": o.reason_code,
            }
            if o.status != before_status:
                data["previous_status"] = before_status
            if o.filled_quantity is not None:
                data["filled_quantity"] = o.filled_quantity
                if o.filled_quantity != before_filled:
                    data["previous_filled_quantity"] = before_filled
            if o.average_price is not None and o.filled_quantity:
                data["average_price"] = str(o.average_price)
            fill = (
                f" (filled {o.filled_quantity}/{m.quantity})"
                if o.filled_quantity is not None and o.filled_quantity != before_filled
                else ""
            )
            events.append(
                ReplicationEvent(
                    kind=o.event,
                    account_id=m.child_id,
                    allocation_id=m.allocation_id,
                    mapping_id=m.pk,
                    message=f"{m.tag} {m.side} {m.quantity} {m.exchange}:{m.tradingsymbol} -> {o.status}"
                    + fill
                    + (f": {o.reason}" if o.reason else ""),
                    data=data,
                )
            )
        insert_rows(ReplicationEvent, events)

    def _account_effects(self, *, needs_login: set[int], failed: set[int], ok: set[int]) -> None:
        now = self.now()
        if needs_login:
            mark_needs_login(
                sorted(needs_login),
                reason="broker session expired; the child is skipped until it logs in again",
            )
        if ok:
            Account.objects.filter(pk__in=ok, consecutive_failures__gt=0).update(consecutive_failures=0)
        if failed:
            Account.objects.filter(pk__in=failed).update(consecutive_failures=F("consecutive_failures") + 1)
            tripped = list(
                Account.objects.filter(
                    pk__in=failed,
                    consecutive_failures__gte=self.breaker_threshold,
                    breaker_tripped_at__isnull=True,
                ).values_list("pk", flat=True)
            )
            if tripped:
                Account.objects.filter(pk__in=tripped).update(breaker_tripped_at=now)
                ReplicationEvent.objects.bulk_create(
                    ReplicationEvent(
                        kind="breaker_tripped",
                        account_id=pk,
                        message=f"{self.breaker_threshold} failed orders in a row: entries paused, "
                        "exits continue; resume the account to reset",
                        data={},
                    )
                    for pk in tripped
                )


def _changes(m: OrderMapping, o: Outcome) -> bool:
    return (
        o.status != m.status
        or (o.filled_quantity is not None and o.filled_quantity != m.filled_quantity)
        or (o.broker_status and o.broker_status != m.broker_status)
        or (o.broker_order_id and o.broker_order_id != m.broker_order_id)
        or o.error is not None
    )


def mark_needs_login(account_ids: Sequence[int], *, reason: str) -> list[int]:
    """Move these accounts to NEEDS_LOGIN (skipped and shown until they log in); one audit row each."""
    with transaction.atomic():
        moved = list(
            Account.objects.filter(pk__in=account_ids)
            .exclude(status__in=(AccountStatus.NEEDS_LOGIN, AccountStatus.DISABLED))
            .values_list("pk", flat=True)
        )
        Account.objects.filter(pk__in=moved).update(status=AccountStatus.NEEDS_LOGIN)
        ReplicationEvent.objects.bulk_create(
            ReplicationEvent(
                kind="account_needs_login",
                account_id=pk,
                message=reason,
                data={"status": {"after": AccountStatus.NEEDS_LOGIN}},
            )
            for pk in moved
        )
    return moved
