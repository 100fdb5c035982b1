"""Allocations: the engine records them (`allocation_create`); staff decide on held ones.

Every change is audited in the transaction that makes it; no broker write happens here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

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
    """Resting exits of the master that filled for the first time this tick after other events in
    their instrument, or against a position other than the one they were sized against (the master
    added, or reduced, while they rested): store the position they filled against and replay them
    after every allocation made so far (DESIGN §3.4: r is taken against the position before the
    exit). Children's entitlements in those instruments are followed again. Called inside the
    record stage's lease-checked transaction, before this tick's allocations are made; returns how
    many were retimed."""
    if not fill_before:
        return 0
    links = Allocation.master_orders.through.objects.filter(
        masterorder__account_id=master_id,
        masterorder__broker_order_id__in=list(fill_before),
        allocation__kind=AllocationKind.CLOSE,
        allocation__replay_after__isnull=True,
    ).exclude(allocation__status=AllocationStatus.REJECTED)
    last = Allocation.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    retimed = 0
    for alloc_id, order_id, master_order_id in links.values_list(
        "allocation_id", "masterorder__broker_order_id", "masterorder_id"
    ):
        allocation = Allocation.objects.get(pk=alloc_id)
        before = fill_before[order_id]
        old = allocation.master_position_before
        if before == 0 or (before > 0) != (old > 0):
            continue  # no longer an exit of that position
        after_it = Allocation.objects.filter(
            exchange=allocation.exchange,
            tradingsymbol=allocation.tradingsymbol,
            product=allocation.product,
            kind__in=(AllocationKind.OPEN, AllocationKind.CLOSE),
            pk__gt=alloc_id,
        )
        own_parts = after_it.filter(master_orders=master_order_id)  # the open part of a zero crossing
        if before == old and not after_it.exclude(pk__in=own_parts.values("pk")).exists():
            continue  # filled against the position it was sized against, with nothing in between
        ratio = Decimal(min(allocation.master_quantity, abs(before))) / Decimal(abs(before))
        Allocation.objects.filter(pk=alloc_id).update(
            master_position_before=before,
            replay_after=last,
            exit_ratio=ratio.quantize(Decimal("0.000000000001")),
        )
        # The open part of a zero crossing goes with it: right after the close, as the order filled.
        parts = list(own_parts.values_list("pk", flat=True))
        Allocation.objects.filter(pk__in=parts).update(replay_after=last)
        inst = (allocation.exchange, allocation.tradingsymbol, allocation.product)
        entitlements_unsettle(  # every child with an engine order there: entries make no row
            keys={
                (cid, *inst): allocation.lot_size
                for cid in OrderMapping.objects.filter(
                    exchange=inst[0], tradingsymbol=inst[1], product=inst[2]
                ).values_list("child_id", flat=True)
            }
        )
        entitlements_unsettle_instrument(exchange=inst[0], tradingsymbol=inst[1], product=inst[2])
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
