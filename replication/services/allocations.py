"""Allocations: the engine records them (`allocation_create`); staff decide on held ones.

Every change is audited in the transaction that makes it; no broker write happens here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from brokers.types import Side
from replication.entitlement import master_exit_filled
from replication.models import (
    Allocation,
    AllocationKind,
    AllocationStatus,
    EventKind,
    MappingStatus,
    MasterOrder,
    OrderMapping,
)
from replication.services._common import clean_staff_reason
from replication.services.audit_log import audit
from replication.services.entitlements import entitlements_unsettle, entitlements_unsettle_instrument


class AllocationDecisionError(ValueError):
    """The allocation is not waiting for a decision."""


def allocation_create(
    *,
    allocation: Allocation,
    master_orders: Sequence[MasterOrder],
    kind: EventKind,
    message: str,
    data: dict[str, Any],
) -> Allocation:
    """Insert an allocation the engine planned (unsaved), link the master orders it follows and
    write its audit row (`allocation_created` or `allocation_held`, on the master's account).

    Called inside the record stage's transaction, after its lease check: the master's orders and
    the allocations they cause are committed together.
    """
    allocation.save(force_insert=True)
    allocation.master_orders.set(master_orders)
    audit(kind=kind, account=allocation.master, allocation=allocation, message=message, data=data)
    return allocation


def allocation_owed_create(*, allocation: Allocation) -> Allocation:
    """Insert an allocation of owed exits (DESIGN §3.7; unsaved, already sized). Called inside the
    convergence stage's lease-checked transaction; its intents and audit rows follow in the same
    transaction (`intents.exits_owed_record`)."""
    allocation.save(force_insert=True)
    return allocation


def allocation_resize(*, allocation: Allocation, master_quantity: int) -> None:
    """The master changed the orders an allocation follows: store its new master quantity, then mark
    the entitlement of every child in the instrument for the convergence stage (rows made for the
    children of this allocation), in a transaction of its own.

    No lease check, as before these services: the propagate stage's changes to intents not yet sent
    are written the same way, and the send gate checks the lease before anything is sent.
    """
    Allocation.objects.filter(pk=allocation.pk).update(master_quantity=master_quantity)
    with transaction.atomic():
        entitlements_unsettle(
            keys={
                (cid, allocation.exchange, allocation.tradingsymbol, allocation.product): allocation.lot_size
                for cid in OrderMapping.objects.filter(allocation=allocation)
                .values_list("child_id", flat=True)
                .distinct()
            }
        )
        entitlements_unsettle_instrument(
            exchange=allocation.exchange, tradingsymbol=allocation.tradingsymbol, product=allocation.product
        )


def allocations_retime_exits(*, master_id: int, fill_before: Mapping[str, int]) -> int:
    """Resting orders of the master that filled for the first time this tick, judged by the
    position they filled against (DESIGN §3.2: an order is an entry or an exit by the master's
    position just before it; §3.4: r is taken against that position):
    - a resting exit that filled after other events in its instrument, or against a position other
      than the one it was sized against (the master added, or reduced, while it rested): store the
      position it filled against and replay it after every allocation made so far;
    - a resting entry that filled against a position on the other side (the master turned around
      while it rested) closed that position: it becomes an exit of it, replayed where it filled.
    Children's entitlements in those instruments are followed again. Called inside the record
    stage's lease-checked transaction, before this tick's allocations are made (so "every
    allocation made so far" is the earlier ticks'; `allocations_replay_after_new` then moves the
    ones that filled after this tick's own new orders behind those); returns how many were
    retimed."""
    if not fill_before:
        return 0
    links = Allocation.master_orders.through.objects.filter(
        masterorder__account_id=master_id,
        masterorder__broker_order_id__in=list(fill_before),
        allocation__kind__in=(AllocationKind.OPEN, AllocationKind.CLOSE),
        allocation__replay_after__isnull=True,
    ).exclude(allocation__status=AllocationStatus.REJECTED)
    last = Allocation.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    retimed = 0
    for alloc_id, order_id, master_order_id in links.order_by("allocation_id").values_list(
        "allocation_id", "masterorder__broker_order_id", "masterorder_id"
    ):
        allocation = Allocation.objects.get(pk=alloc_id)
        if allocation.replay_after is not None:
            continue  # retimed already (an aggregated allocation: one of its other orders)
        before = fill_before[order_id]
        if allocation.kind == AllocationKind.OPEN:
            if _entry_turned_exit(allocation, before, master_order_id):
                _retime_entry_as_exit(allocation, order_id, before, last)
                retimed += 1
            continue
        old = allocation.master_position_before
        if before == 0 or (before > 0) != (old > 0):
            continue  # no longer an exit of that position
        after_it = _allocations_after(allocation)
        own_parts = after_it.filter(master_orders=master_order_id)  # the open part of a zero crossing
        if before == old and not after_it.exclude(pk__in=own_parts.values("pk")).exists():
            continue  # filled against the position it was sized against, with nothing in between
        # An order that crossed zero when it was placed is split again by the position it filled
        # against: it closes up to that position and opens only the rest (the master added while
        # it rested: it may now close all of it and open nothing).
        # The same when the order grew after it was sized (a close capped at the position then,
        # raised by the master): what it filled closes up to the position it filled against.
        opens = list(own_parts.filter(kind=AllocationKind.OPEN, side=allocation.side).order_by("pk"))
        total = allocation.master_quantity + sum(p.master_quantity for p in opens)
        total = max(total, master_exit_filled([allocation.pk]).get(allocation.pk, 0))
        closing = min(total, abs(before))
        ratio = _exit_ratio(closing, before)
        Allocation.objects.filter(pk=alloc_id).update(
            master_quantity=closing, master_position_before=before, replay_after=last, exit_ratio=ratio
        )
        rest = total - closing
        for part in opens:
            Allocation.objects.filter(pk=part.pk).update(master_quantity=rest)
            rest = 0
        # The open part of a zero crossing goes with it: right after the close, as the order filled.
        parts = list(own_parts.values_list("pk", flat=True))
        Allocation.objects.filter(pk__in=parts).update(replay_after=last)
        _follow_instrument(allocation)
        audit(
            kind=EventKind.ALLOCATION_SIZED,
            account=allocation.master,
            allocation=allocation,
            message=f"resting exit {order_id} filled against a master position of {before} "
            f"(sized against {old}): exit ratio {ratio:.4f}, applied where it filled",
            data={"order_id": order_id, "position_before": before, "sized_against": old},
        )
        retimed += 1
    return retimed


def allocations_follow_exit_fills(*, master_id: int, order_ids: Sequence[str]) -> int:
    """The master's exits that filled (more) this tick: every child in their instruments is
    followed again, so an exit owed by that fill is sent (DESIGN §3.7: what is owed is judged
    against what the master filled; a child without a resting mirror of the exit follows it
    now). Called in the record stage's transaction; returns how many exits were followed."""
    if not order_ids:
        return 0
    exits = list(
        Allocation.objects.filter(
            master_id=master_id,
            kind=AllocationKind.CLOSE,
            master_orders__broker_order_id__in=list(order_ids),
        )
        .exclude(status=AllocationStatus.REJECTED)
        .distinct()
    )
    for allocation in exits:
        _follow_instrument(allocation)
    return len(exits)


def allocations_replay_after_new(*, master_id: int, new_fills_before: Mapping[str, tuple[str, ...]]) -> int:
    """Resting orders retimed this tick whose first fill came after fills of this tick's new
    orders in the same instrument (`allocations_retime_exits` runs before this tick's allocations
    exist, so it placed them before): replayed after those orders' allocations instead, where the
    exchange filled them. Called in the record stage's transaction, after this tick's allocations
    are made; returns how many moved."""
    if not new_fills_before:
        return 0
    moved = 0
    links = Allocation.master_orders.through.objects.filter(
        masterorder__account_id=master_id,
        masterorder__broker_order_id__in=list(new_fills_before),
        allocation__replay_after__isnull=False,
    ).exclude(allocation__status=AllocationStatus.REJECTED)
    for alloc_id, order_id, master_order_id in links.values_list(
        "allocation_id", "masterorder__broker_order_id", "masterorder_id"
    ):
        allocation = Allocation.objects.get(pk=alloc_id)
        earlier = (
            Allocation.objects.filter(
                master_orders__account_id=master_id,
                master_orders__broker_order_id__in=new_fills_before[order_id],
                exchange=allocation.exchange,
                tradingsymbol=allocation.tradingsymbol,
                product=allocation.product,
                kind__in=(AllocationKind.OPEN, AllocationKind.CLOSE),
            )
            .order_by("-pk")
            .values_list("pk", flat=True)
            .first()
        )
        if earlier is None or allocation.replay_after is None or earlier <= allocation.replay_after:
            continue
        # With it, the open part of its zero crossing (made from the same order), if any.
        Allocation.objects.filter(master_orders=master_order_id, replay_after=allocation.replay_after).update(
            replay_after=earlier
        )
        _follow_instrument(allocation)
        moved += 1
    return moved


def _allocations_after(allocation: Allocation) -> Any:
    return Allocation.objects.filter(
        exchange=allocation.exchange,
        tradingsymbol=allocation.tradingsymbol,
        product=allocation.product,
        kind__in=(AllocationKind.OPEN, AllocationKind.CLOSE),
        pk__gt=allocation.pk,
    )


def _exit_ratio(master_quantity: int, before: int) -> Decimal:
    ratio = Decimal(min(master_quantity, abs(before))) / Decimal(abs(before))
    return ratio.quantize(Decimal("0.000000000001"))


def _entry_turned_exit(allocation: Allocation, before: int, master_order_id: int) -> bool:
    """Whether an entry's master order first filled against a position on the other side (an
    entry to buy filling while the master is short). The open part of a zero crossing made when
    the order appeared is an entry by design (its close part is the exit), so it is left alone."""
    buys = allocation.side == Side.BUY
    if before == 0 or (before < 0) != buys:
        return False
    crossing = Allocation.objects.filter(master_orders=master_order_id, kind=AllocationKind.CLOSE)
    return not crossing.exists()


def _retime_entry_as_exit(allocation: Allocation, order_id: str, before: int, last: int) -> None:
    """The entry closed the master's position: an exit of it (r against the position it filled
    against), replayed where it filled. Its children's orders are then exits working; a child
    without one owes the exit (the entitlement rule, §3.7)."""
    ratio = _exit_ratio(allocation.master_quantity, before)
    Allocation.objects.filter(pk=allocation.pk).update(
        kind=AllocationKind.CLOSE, master_position_before=before, replay_after=last, exit_ratio=ratio
    )
    _follow_instrument(allocation)
    audit(
        kind=EventKind.ALLOCATION_SIZED,
        account=allocation.master,
        allocation=allocation,
        message=f"resting entry {order_id} filled against a master position of {before}: it "
        f"closed that position, an exit with ratio {ratio:.4f}, applied where it filled",
        data={"order_id": order_id, "position_before": before, "was": AllocationKind.OPEN.value},
    )


def _follow_instrument(allocation: Allocation) -> None:
    """Every child with an engine order in the allocation's instrument is followed again (entries
    make no entitlement row)."""
    inst = (allocation.exchange, allocation.tradingsymbol, allocation.product)
    entitlements_unsettle(
        keys={
            (cid, *inst): allocation.lot_size
            for cid in OrderMapping.objects.filter(
                exchange=inst[0], tradingsymbol=inst[1], product=inst[2]
            ).values_list("child_id", flat=True)
        }
    )
    entitlements_unsettle_instrument(exchange=inst[0], tradingsymbol=inst[1], product=inst[2])


def allocation_approve(*, allocation: Allocation, actor: str) -> Allocation:
    """Release a held allocation: its committed intents are sent on the next tick."""
    with transaction.atomic():
        alloc = Allocation.objects.select_for_update().get(pk=allocation.pk)
        if alloc.status != AllocationStatus.AWAITING_APPROVAL:
            raise AllocationDecisionError(f"allocation {alloc.pk} is {alloc.status}, not awaiting approval")
        alloc.set_status(AllocationStatus.PLANNED)
        alloc.decided_by, alloc.decided_at = actor, timezone.now()
        alloc.save(update_fields=["status", "decided_by", "decided_at"])
        audit(
            kind=EventKind.ALLOCATION_APPROVED,
            actor=actor,
            allocation=alloc,
            account=alloc.master,
            message=f"allocation {alloc.pk} approved by {actor}",
        )
    return alloc


def allocation_reject(*, allocation: Allocation, actor: str, reason: str) -> Allocation:
    """Refuse a held allocation: its intents are withdrawn and never sent."""
    if not reason.strip():
        raise AllocationDecisionError("a reason is required to reject an allocation")
    reason = clean_staff_reason(reason, refused=AllocationDecisionError)
    with transaction.atomic():
        alloc = Allocation.objects.select_for_update().get(pk=allocation.pk)
        if alloc.status != AllocationStatus.AWAITING_APPROVAL:
            raise AllocationDecisionError(f"allocation {alloc.pk} is {alloc.status}, not awaiting approval")
        alloc.set_status(AllocationStatus.REJECTED)
        alloc.decided_by, alloc.decided_at = actor, timezone.now()
        alloc.reason = (alloc.reason + f"; rejected: {reason}").strip("; ")
        alloc.save(update_fields=["status", "decided_by", "decided_at", "reason"])
        withdrawn = OrderMapping.objects.filter(allocation=alloc, status=MappingStatus.PLANNED).update(
            status=MappingStatus.CANCELLED,
            reason=f"allocation rejected by {actor}: {reason}"[:2000],
            reason_code="staff_rejected",
            finished_at=timezone.now(),
        )
        audit(
            kind=EventKind.ALLOCATION_REJECTED,
            actor=actor,
            allocation=alloc,
            account=alloc.master,
            message=f"allocation {alloc.pk} rejected by {actor}: {reason}",
            data={"withdrawn": withdrawn},
        )
    return alloc
