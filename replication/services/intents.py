"""Child intents (`OrderMapping` rows before they reach a broker): committed per sized group,
withdrawn before they are sent, claimed for sending (PLANNED -> SENDING). What the brokers answered
is written by `outcomes`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from replication.bulk import insert_rows
from replication.entitlement import Key
from replication.lease import Lease, lease_check
from replication.models import Allocation, AllocationStatus, MappingStatus, OrderMapping
from replication.services.audit_log import EventKind, audit_row, audit_rows
from replication.services.entitlements import entitlements_unsettle

if TYPE_CHECKING:  # the allocation package imports this module: no import at run time
    from replication.allocation.intents import IntentRow


def intents_commit(
    *,
    lease: Lease,
    group: Sequence[Allocation],
    intents: Sequence[IntentRow],
    unsettle: dict[Key, int],
    sized: Mapping[int, tuple[str, dict[str, int]]],
) -> None:
    """Claim the group's allocations as sized, insert their intents, mark `unsettle`'s entitlements
    for convergence and write one `allocation_sized` row per allocation (`sized`: its message and
    status counts, by allocation id), in one lease-checked transaction. Raises RuntimeError
    (nothing written) when another process sized the group first."""
    with transaction.atomic():
        lease_check(lease)
        claimed = Allocation.objects.filter(pk__in=[a.pk for a in group], sized=False).update(sized=True)
        if claimed != len(group):
            raise RuntimeError(f"allocations of group {group[0].group_key} were sized concurrently")
        insert_rows(OrderMapping, intents)
        entitlements_unsettle(keys=unsettle)
        # One audit row per allocation for the whole batch: the intents themselves are the rows
        # just written (each with its status and reason); every later change gets its own event.
        audit_rows(
            audit_row(
                kind=EventKind.ALLOCATION_SIZED,
                account_id=a.master_id,
                allocation=a,
                message=sized[a.pk][0],
                data=sized[a.pk][1],
            )
            for a in group
        )


def intents_withdraw(
    mappings: Sequence[OrderMapping], *, lease: Lease, reason: str, reason_code: str, why: str
) -> None:
    """Cancel these PLANNED intents before they are sent (`reason` on the row, `why` in the
    audit message: "<tag> withdrawn: <why>"), in one lease-checked transaction."""
    if not mappings:
        return
    with transaction.atomic():
        lease_check(lease)
        now = timezone.now()
        for m in mappings:
            m.set_status(MappingStatus.CANCELLED)
            m.reason, m.reason_code, m.finished_at = reason, reason_code, now
        OrderMapping.objects.bulk_update(mappings, ["status", "reason", "reason_code", "finished_at"])
        audit_rows(
            audit_row(
                kind=EventKind.INTENT_WITHDRAWN,
                account_id=m.child_id,
                allocation_id=m.allocation_id,
                mapping_id=m.pk,
                message=f"{m.tag} withdrawn: {why}",
            )
            for m in mappings
        )


def intents_claim(*, mappings: Sequence[OrderMapping], epoch: int, now: datetime) -> set[int]:
    """Claim these intents for sending (PLANNED -> SENDING under this epoch, one more attempt) and
    mark their PLANNED allocations DISPATCHED; returns the ids this claim won (a conditional update:
    an intent another sender claimed first is not among them).

    Called inside the send gate's claim transaction, after its lease check and its send-time
    decisions; the broker calls come after that transaction commits.
    """
    ids = [m.pk for m in mappings]
    OrderMapping.objects.filter(pk__in=ids, status=MappingStatus.PLANNED).update(
        status=MappingStatus.SENDING,
        epoch=epoch,
        sent_at=now,
        attempts=F("attempts") + 1,
    )
    claimed = set(
        OrderMapping.objects.filter(pk__in=ids, status=MappingStatus.SENDING, epoch=epoch).values_list(
            "pk", flat=True
        )
    )
    Allocation.objects.filter(
        pk__in={m.allocation_id for m in mappings}, status=AllocationStatus.PLANNED
    ).update(status=AllocationStatus.DISPATCHED)
    return claimed
