"""Size one group of allocations and commit its child intents (no broker writes)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db import transaction
from django.db.models import Q

from brokers.types import Side
from replication.allocation.entries import entry_rows
from replication.allocation.exits import exit_rows
from replication.allocation.intents import sized_message, status_counts
from replication.bulk import batch_size, insert_rows
from replication.clients import ClientCache
from replication.entitlement import Instrument, Key
from replication.fanout import FanOut
from replication.gate import Switches
from replication.lease import Lease, lease_check
from replication.models import (
    Allocation,
    AllocationKind,
    EngineControl,
    Entitlement,
    MappingStatus,
    OrderMapping,
)
from replication.services.audit_log import EventKind, audit_row, audit_rows


def create_intents(
    group: Sequence[Allocation],
    *,
    lease: Lease,
    control: EngineControl,
    clients: ClientCache,
    pool: FanOut,
) -> int:
    """Size every eligible child for one group of allocations and commit the intents.

    Entries: every eligible child, by the sizing rules. Exits: every child holding or entitled in
    the instrument, by its entitlement (DESIGN §3.7); those children's entitlement rows are marked
    unsettled in the same transaction, so the convergence stage follows them until H equals E.
    """
    group = sorted(group, key=lambda a: a.pk)
    engine = Switches.read(control)
    if group[0].kind == AllocationKind.OPEN:
        rows = entry_rows(group, control, engine, clients=clients, pool=pool)
        followed: set[Key] = set()
    else:
        rows, followed = exit_rows(group, engine, clients)
    has_buy = any(a.side == Side.BUY for a in group)
    for m in rows:
        m.wave = 1 if has_buy and m.side == Side.SELL else 0
        m.epoch = lease.epoch
    # Entries alone never make an exit owed: the entitlement rows are made (and followed by the
    # convergence stage) when something can move E below H — an exit, a rescaled allocation —
    # for every child holding, entitled or with an order in flight there. Keeping them out of the
    # entry path keeps a thousand-child fan-out from waiting on them.
    lot_sizes = {(a.exchange, a.tradingsymbol, a.product): a.lot_size for a in group}
    touched = {key: lot_sizes.get(key[1:], 1) for key in followed}
    with transaction.atomic():
        lease_check(lease)
        claimed = Allocation.objects.filter(pk__in=[a.pk for a in group], sized=False).update(sized=True)
        if claimed != len(group):
            raise RuntimeError(f"allocations of group {group[0].group_key} were sized concurrently")
        insert_rows(OrderMapping, rows)
        created = rows
        entitlements_unsettle(touched)
        # One audit row per allocation for the whole batch: the intents themselves are the rows
        # just written (each with its status and reason); every later change gets its own event.
        audit_rows(
            audit_row(
                kind=EventKind.ALLOCATION_SIZED,
                account_id=a.master_id,
                allocation=a,
                message=sized_message(a, created),
                data=status_counts(a, created),
            )
            for a in group
        )
    return sum(1 for m in created if m.status == MappingStatus.PLANNED)


def _key_q(inst: Instrument) -> Q:
    return Q(exchange=inst[0], tradingsymbol=inst[1], product=inst[2])


def entitlements_unsettle(keys: dict[Key, int]) -> None:
    """Mark these (child, instrument) entitlements for the convergence stage (create missing rows).

    Call inside the transaction that commits what changed them.
    """
    if not keys:
        return
    Entitlement.objects.bulk_create(
        [
            Entitlement(child_id=k[0], exchange=k[1], tradingsymbol=k[2], product=k[3], lot_size=lot or 1)
            for k, lot in keys.items()
        ],
        ignore_conflicts=True,
        batch_size=batch_size(Entitlement),
    )
    by_instrument: dict[Instrument, list[int]] = defaultdict(list)
    for k in keys:
        by_instrument[k[1:]].append(k[0])
    for inst, child_ids in by_instrument.items():
        Entitlement.objects.filter(_key_q(inst), child_id__in=child_ids, settled=True).update(settled=False)
