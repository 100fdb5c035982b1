"""Size one group of allocations and commit its child intents (no broker writes)."""

from __future__ import annotations

from collections.abc import Sequence

from brokers.types import Side
from replication.allocation.entries import entry_rows
from replication.allocation.exits import exit_rows
from replication.allocation.intents import sized_message, status_counts
from replication.clients import ClientCache
from replication.entitlement import Key
from replication.fanout import FanOut
from replication.gate import Switches
from replication.lease import Lease
from replication.models import Allocation, AllocationKind, EngineControl, MappingStatus
from replication.services.intents import intents_commit


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
    sized = {a.pk: (sized_message(a, rows), status_counts(a, rows)) for a in group}
    intents_commit(lease=lease, group=group, intents=rows, unsettle=touched, sized=sized)
    return sum(1 for m in rows if m.status == MappingStatus.PLANNED)
