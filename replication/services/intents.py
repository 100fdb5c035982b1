"""Child intents (`OrderMapping` rows before they reach a broker): committed per sized group,
withdrawn before they are sent, claimed for sending (PLANNED -> SENDING). What the brokers answered
is written by `outcomes`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from brokers.types import OrderType
from replication.bulk import insert_rows, update_rows
from replication.entitlement import Key
from replication.lease import Lease, lease_check
from replication.models import (
    Allocation,
    AllocationStatus,
    Entitlement,
    MappingStatus,
    OrderMapping,
    ReplicationEvent,
)
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
        _sized_records(group, sized)


def intents_commit_first(
    *,
    lease: Lease,
    group: Sequence[Allocation],
    intents: Sequence[IntentRow],
    sized: Mapping[int, tuple[str, dict[str, int]]],
) -> None:
    """Insert the first wave of an opening group's intents with one `allocation_sized` row per
    allocation (`sized` as for `intents_commit`), in a lease-checked transaction, leaving the group
    unsized: `intents_commit` inserts the rest (with its own rows) and marks it sized. Raises
    RuntimeError (nothing written) when the group is sized already (another process sized it)."""
    with transaction.atomic():
        lease_check(lease)
        unsized = Allocation.objects.filter(pk__in=[a.pk for a in group], sized=False).count()
        if unsized != len(group):
            raise RuntimeError(f"allocations of group {group[0].group_key} were sized concurrently")
        insert_rows(OrderMapping, intents)
        _sized_records(group, sized)


def _sized_records(group: Sequence[Allocation], sized: Mapping[int, tuple[str, dict[str, int]]]) -> None:
    """One `allocation_sized` audit row per allocation for the whole batch: the intents themselves
    are the rows just written (each with its status and reason); every later change gets its own
    event."""
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
    won = OrderMapping.objects.filter(pk__in=ids, status=MappingStatus.PLANNED).update(
        status=MappingStatus.SENDING,
        epoch=epoch,
        sent_at=now,
        attempts=F("attempts") + 1,
    )
    unique = set(ids)
    # Every intent was PLANNED and is now SENDING under this epoch (the update holds them until
    # the transaction commits): they are all ours, no need to read them back.
    claimed = (
        unique
        if won == len(unique)
        else set(
            OrderMapping.objects.filter(pk__in=ids, status=MappingStatus.SENDING, epoch=epoch).values_list(
                "pk", flat=True
            )
        )
    )
    Allocation.objects.filter(
        pk__in={m.allocation_id for m in mappings}, status=AllocationStatus.PLANNED
    ).update(status=AllocationStatus.DISPATCHED)
    return claimed


def intent_rewrite(*, mapping: OrderMapping, changes: Mapping[str, Any]) -> None:
    """An intent not sent yet takes the master's changes itself (order type, prices, quantity); a
    MARKET order has no price, an SL-M no limit price. Saved in autocommit, no lease check, as the
    propagate stage wrote it before these services (the claim checks the lease before any send)."""
    for k, v in changes.items():
        setattr(mapping, k, v)
    fields = [*changes.keys()]
    if changes.get("order_type") == OrderType.MARKET:
        mapping.price, mapping.trigger_price = Decimal(0), Decimal(0)
        fields += ["price", "trigger_price"]
    elif changes.get("order_type") == OrderType.SLM:
        mapping.price = Decimal(0)
        fields.append("price")
    mapping.save(update_fields=[*dict.fromkeys(fields), "updated_at"])


def exits_owed_record(
    *,
    intents: Sequence[IntentRow],
    entitlements: Sequence[Entitlement],
    entitlement_fields: Sequence[str],
    events: Sequence[ReplicationEvent],
) -> None:
    """The convergence stage's owed exits: their intents, the entitlement rows it looked at (attempts,
    backoff, hold reason, owed since) and the audit rows of both. Called inside the stage's
    lease-checked transaction, after `allocation_owed_create` made the allocations the intents
    belong to."""
    insert_rows(OrderMapping, intents)
    update_rows(entitlements, list(entitlement_fields))
    if events:
        audit_rows(events)
