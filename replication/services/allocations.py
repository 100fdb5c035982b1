"""Allocations: the engine records them (`allocation_create`); staff decide on held ones.

Every change is audited in the transaction that makes it; no broker write happens here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from replication.models import (
    Allocation,
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
