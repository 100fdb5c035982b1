"""Dispatch: claim committed intents through the send gate, send them per child, write back."""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import IntegerField
from django.db.models.functions import Mod
from django.utils import timezone

from accounts.crypto import CredentialDecryptError
from brokers.base import BrokerClient
from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    TokenExpired,
)
from brokers.instruments import (
    NOT_LISTED,
    listing_reason,
    master_for,
    same_symbology,
)
from brokers.types import OrderStatus
from replication.engine.sender.changes import OpenOrderChanges
from replication.engine.sender.outcomes import (
    ACCEPTED,
    MAX_SEND_ATTEMPTS,
    NOT_ACCEPTED,
    SEND_FIELDS,
    DispatchReport,
    Outcome,
    Shard,
    mapping_request,
    send_error_outcome,
)
from replication.failpoints import failpoint
from replication.gate import Switches, Verdict, action_for, child_switches, decide
from replication.lease import lease_check
from replication.models import (
    Allocation,
    AllocationStatus,
    MappingStatus,
    OrderMapping,
)
from replication.ratelimit import BudgetExhausted
from replication.services.intents import intents_claim
from replication.services.outcomes import outcomes_hold

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Claimed:
    """What one claim let through: the intents that passed the gate, those it won per child (each
    child's in the order they were made), and until when they may be sent."""

    passing: list[OrderMapping]
    by_child: list[list[OrderMapping]]
    send_until: datetime


class Dispatch(OpenOrderChanges):
    """Committed intents claimed (PLANNED -> SENDING) through the send gate, sent in the pool."""

    # --- dispatch ------------------------------------------------------------------------------

    def dispatch(
        self,
        *,
        halted: bool = False,
        only: Iterable[int] | None = None,
        shard: Shard | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> DispatchReport:
        """Send every dispatchable PLANNED intent: buy legs first, then the sell legs they hedge.

        Every intent passes the send gate (`replication.gate`) as it is claimed, whoever sends it
        (this tick, a queue-mode shard task, a later tick): `halted` only saves the reads.
        With `shard` only the children of that shard (child id mod count) are sent: the queue
        mode's workers each take one shard, so a child's orders always stay in one worker's hands.
        `meanwhile` (the rest of the tick's sizing) runs once the first wave is on its way, before
        the rest is loaded: what it commits goes in this dispatch.
        """
        report = DispatchReport()
        if halted:
            if meanwhile is not None:
                meanwhile()
            return report
        t0 = time.perf_counter()
        first_wave = self.fanout.first_wave
        sells: list[OrderMapping] = []
        buys: list[OrderMapping] = []
        if first_wave > 0:
            # The first wave (`FANOUT_FIRST_WAVE` children) is claimed and on its way before the
            # rest is loaded and claimed: the first child's order does not wait for a thousand
            # intents' sizing, load and claim, which run while the first wave is in flight.
            buys = self._planned(only=only, shard=shard, wave=0, children=first_wave)

        first_children = {m.child_id for m in buys}
        after_first: list[OrderMapping] = []

        def load_rest() -> list[OrderMapping]:
            if meanwhile is not None:
                meanwhile()
            later_buys, later_sells = self._planned_waves(only=only, shard=shard)
            sells.extend(later_sells)
            # A child of the first wave with more to send now (an intent the rest's sizing made
            # for it) waits for the first wave's outcomes: a child's orders go one after the other.
            after_first.extend(m for m in later_buys if m.child_id in first_children)
            return [m for m in later_buys if m.child_id not in first_children]

        if buys and (meanwhile is not None or len(first_children) >= first_wave):
            report.phases_ms["load"] = (time.perf_counter() - t0) * 1000
            report.merge(self._send_wave(buys, rest=load_rest))
            if after_first:
                # Not while an earlier intent of the same child is still to be sent (deferred by
                # its rate limit, say): a child's orders go in the order they were made.
                waiting = set(
                    OrderMapping.objects.filter(
                        pk__in=[m.pk for m in buys], status=MappingStatus.PLANNED
                    ).values_list("child_id", flat=True)
                )
                ready_after = [m for m in after_first if m.child_id not in waiting]
                if ready_after:
                    report.merge(self._send_wave(ready_after))
        else:
            # No first wave to overlap with (no pool, or nothing to send yet): everything at once.
            if first_wave <= 0 or meanwhile is not None:
                buys = load_rest()
            else:
                # Fewer children than a wave: every buy leg is in the first, the sell legs remain.
                sells = self._planned(only=only, shard=shard, wave=1)
            report.phases_ms["load"] = (time.perf_counter() - t0) * 1000
            if buys:
                report.merge(self._send_wave(buys))
        if sells:
            # A sell leg goes only once its buy legs are in the child's book and not rejected
            # (DESIGN §3.3 step 6): a place call's id is not that, brokers reject after a 200.
            unconfirmed = self._unconfirmed_buy_legs(sells)
            if unconfirmed:
                self.follow_up(children=unconfirmed, recover=False)
            ready = self._sell_legs_ready(sells)
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

    def _planned_waves(
        self, *, only: Iterable[int] | None, shard: Shard | None = None
    ) -> tuple[list[OrderMapping], list[OrderMapping]]:
        """Every dispatchable PLANNED intent: (buy legs and single orders, the sell legs they hedge)."""
        mappings = self._planned(only=only, shard=shard)
        return [m for m in mappings if m.wave == 0], [m for m in mappings if m.wave != 0]

    def _planned(
        self,
        *,
        only: Iterable[int] | None,
        shard: Shard | None = None,
        wave: int | None = None,
        children: int | None = None,
    ) -> list[OrderMapping]:
        """The dispatchable PLANNED intents, in the order they were made; of one `wave` only, and
        (with `children`) only those of the first that many children: all of each child's."""
        qs = OrderMapping.objects.filter(
            status=MappingStatus.PLANNED,
            allocation__status__in=(AllocationStatus.PLANNED, AllocationStatus.DISPATCHED),
        )
        if only is not None:
            qs = qs.filter(allocation_id__in=list(only))
        if shard is not None:
            qs = qs.annotate(shard=Mod("child_id", shard.count, output_field=IntegerField())).filter(
                shard=shard.index
            )
        if wave is not None:
            qs = qs.filter(wave=wave)
        if children is not None:
            first = qs.order_by("child_id").values_list("child_id", flat=True).distinct()[:children]
            qs = qs.filter(child_id__in=list(first))
        return list(qs.select_related("child", "allocation").only(*SEND_FIELDS).order_by("id"))

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
            # No buy leg at all for this child (its leg was rejected before the child had one):
            # nothing hedges the sell leg.
            if not statuses or any(s in NOT_ACCEPTED or b == OrderStatus.REJECTED for s, b in statuses):
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

    def _send_wave(
        self, mappings: list[OrderMapping], *, rest: Callable[[], list[OrderMapping]] | None = None
    ) -> DispatchReport:
        """Claim these intents through the send gate, send them per child in the pool and write the
        outcomes back. With `rest`, the intents it loads are claimed and sent too, once these are
        on their way (their claim runs while the first ones are in flight): one write-back."""
        report = DispatchReport()
        t0 = time.perf_counter()
        first = self._claim(mappings)
        t1 = time.perf_counter()
        self.clients.warm([ms[0].child for ms in first.by_child])
        report.send_started = time.perf_counter()
        collect = [
            self.fanout.submit(
                functools.partial(self._send_child, send_until=first.send_until), first.by_child
            )
        ]
        claimed = [first]
        load_ms = claim_ms = warm_ms = 0.0
        if rest is not None:
            try:
                t2 = time.perf_counter()
                more = rest()
                t3 = time.perf_counter()
                if more:
                    later = self._claim(more)
                    t4 = time.perf_counter()
                    self.clients.warm([ms[0].child for ms in later.by_child])
                    collect.append(
                        self.fanout.submit(
                            functools.partial(self._send_child, send_until=later.send_until), later.by_child
                        )
                    )
                    claimed.append(later)
                    claim_ms, warm_ms = (t4 - t3) * 1000, (time.perf_counter() - t4) * 1000
                load_ms = (t3 - t2) * 1000
            except Exception:
                # The rest failed (its sizing or its claim): what is already out is still written
                # back, then the tick reports the failure (the rest is picked up by the next tick).
                sent = [o for wait in collect for o in wait()]
                self._write_outcomes(sent, by_id={m.pk: m for c in claimed for m in c.passing})
                raise
        outcomes = [o for wait in collect for o in wait()]
        report.last_send_done = time.perf_counter()
        self._write_outcomes(outcomes, by_id={m.pk: m for c in claimed for m in c.passing})
        report.phases_ms = {
            "claim": (t1 - t0) * 1000 + claim_ms,
            "warm_clients": (report.send_started - t1) * 1000 + warm_ms,
            "send": (report.last_send_done - report.send_started) * 1000 - load_ms - claim_ms - warm_ms,
            "write_back": (time.perf_counter() - report.last_send_done) * 1000,
        }
        if load_ms:
            report.phases_ms["load"] = load_ms
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
        for c in claimed:
            for m in c.passing:
                if m.latency_ms is not None:
                    report.latencies_ms.append(m.latency_ms)
        return report

    def _claim(self, mappings: list[OrderMapping]) -> Claimed:
        """The send gate, read now, in the claim's lease-checked transaction: intents it stops are
        held with their reasons, the others claimed (PLANNED -> SENDING). Broker reads (the
        instrument masters) come before the transaction."""
        now = self.now()
        # The claim's lease check extends the lease past this instant, so no other leader can take
        # over before it: orders may go until then, and after it are left for whoever leads next.
        send_until = timezone.now() + self.lease.ttl
        unlisted = self._unlisted(mappings)  # broker reads: before the claim's transaction
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
                if verdict.send and m.pk in unlisted:
                    verdict = Verdict(False, code=NOT_LISTED, reason=unlisted[m.pk])
                (passing.append(m) if verdict.send else held.append((m, verdict)))
            if held:
                self._hold(held)
            claimed = intents_claim(mappings=passing, epoch=self.lease.epoch, now=now)
        by_child: dict[int, list[OrderMapping]] = defaultdict(list)
        for m in passing:
            if m.pk in claimed:
                m.status = MappingStatus.SENDING
                m.attempts += 1
                by_child[m.child_id].append(m)
        return Claimed(passing=passing, by_child=list(by_child.values()), send_until=send_until)

    def _unlisted(self, mappings: Sequence[OrderMapping]) -> dict[int, str]:
        """Intents for a child whose broker names instruments differently from the master's and
        does not list this one (its instrument master, read once a day): mapping id -> why.
        A master that cannot be read stops nothing: the adapter refuses what it cannot map."""
        masters = self._master_brokers({m.allocation_id for m in mappings})
        unlisted: dict[int, str] = {}
        unreadable: set[str] = set()
        for m in mappings:
            broker = m.child.broker
            if broker in unreadable or same_symbology(masters.get(m.allocation_id, broker), broker):
                continue
            try:
                client = self.clients.get(m.child)
                why = listing_reason(master_for(broker, client.instruments), m.exchange, m.tradingsymbol)
            except (BrokerError, CredentialDecryptError) as exc:
                logger.warning("instrument master of %s unavailable: %s", broker, exc)
                unreadable.add(broker)
                continue
            if why:
                unlisted[m.pk] = why
        return unlisted

    def _master_brokers(self, allocation_ids: set[int]) -> dict[int, str]:
        """The master's broker per allocation (an allocation's master never changes: cached)."""
        known: dict[int, str] = self.__dict__.setdefault("_allocation_master_broker", {})
        missing = allocation_ids - known.keys()
        if missing:
            known.update(Allocation.objects.filter(pk__in=missing).values_list("pk", "master__broker"))
        return {pk: known[pk] for pk in allocation_ids if pk in known}

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
        outcomes_hold(
            mappings=[m for m, _ in held],
            events=self._audit_rows_for(
                outcomes, by_id, previous={m.pk: (MappingStatus.PLANNED, m.filled_quantity) for m, _ in held}
            ),
        )

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
        limiter = self.limiters.for_account(child.pk, child.broker)
        outcomes: list[Outcome] = []
        for index, m in enumerate(mappings):
            try:
                limiter.acquire()
            except BudgetExhausted as exc:
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
