"""Size one group of allocations and commit its child intents (no broker writes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from brokers.types import Side
from replication.allocation.children import ChildRow, eligible_child_rows
from replication.allocation.entries import entry_rows
from replication.allocation.exits import exit_rows
from replication.allocation.intents import IntentRow, sized_message, status_counts
from replication.clients import ClientCache
from replication.entitlement import Key
from replication.fanout import FanOut
from replication.gate import Switches
from replication.lease import Lease
from replication.models import Allocation, AllocationKind, EngineControl, MappingStatus, OrderMapping
from replication.services.intents import intents_commit, intents_commit_first


def create_intents(
    group: Sequence[Allocation],
    *,
    lease: Lease,
    control: EngineControl,
    clients: ClientCache,
    pool: FanOut,
    first_wave: int = 0,
) -> Sized:
    """Size every eligible child for one group of allocations and commit the intents.

    Entries: every eligible child, by the sizing rules. Exits: every child holding or entitled in
    the instrument, by its entitlement (DESIGN §3.7); those children's entitlement rows are marked
    unsettled in the same transaction, so the convergence stage follows them until H equals E.

    `first_wave` (entries, more eligible children than that): only the first that many children
    (by id) are sized and committed now, the group staying unsized; the next call sizes the rest
    (every eligible child without an intent in the group yet) and marks the group sized. A crash
    in between leaves an unsized group whose first children have their intents: the next tick's
    call is that same second call.
    """
    group = sorted(group, key=lambda a: a.pk)
    engine = Switches.read(control)
    followed: set[Key] = set()
    earlier: set[tuple[int, int]] = set()  # (allocation, child) of intents made before: a first wave
    if group[0].kind == AllocationKind.OPEN:
        earlier = set(
            OrderMapping.objects.filter(allocation_id__in=[a.pk for a in group]).values_list(
                "allocation_id", "child_id"
            )
        )
        if first_wave > 0 and not earlier:
            children = eligible_child_rows(limit=first_wave + 1)
            if len(children) > first_wave:
                rows = _entries(group, control, engine, clients, pool, lease, children[:first_wave])
                first = {
                    a.pk: (sized_message(a, rows, wave="first wave"), status_counts(a, rows)) for a in group
                }
                intents_commit_first(lease=lease, group=group, intents=rows, sized=first)
                return Sized(made=_planned(rows), complete=False)
        # The rest of a group whose first wave was made: the children without an intent in it
        # only (no reads, no sizing for the others), every leg's wave from the whole group (a leg
        # staff rejected meanwhile is not pending, its hedge's sell legs still wait for it).
        done = {child for _, child in earlier}
        rest = [c for c in eligible_child_rows() if c.pk not in done] if earlier else None
        rows = [
            m
            for m in entry_rows(group, control, engine, clients=clients, pool=pool, children=rest)
            if (m.allocation_id, m.child_id) not in earlier
        ]
    else:
        rows, followed = exit_rows(group, engine, clients)
    _stamp(group, rows, lease, whole=_whole_group(group) if earlier else group)
    # Entries alone never make an exit owed: the entitlement rows are made (and followed by the
    # convergence stage) when something can move E below H — an exit, a rescaled allocation —
    # for every child holding, entitled or with an order in flight there. Keeping them out of the
    # entry path keeps a thousand-child fan-out from waiting on them.
    lot_sizes = {(a.exchange, a.tradingsymbol, a.product): a.lot_size for a in group}
    touched = {key: lot_sizes.get(key[1:], 1) for key in followed}
    # The first wave's intents (made before, with their own record) are not counted again here.
    wave = "the rest, after its first wave" if earlier else ""
    sized = {a.pk: (sized_message(a, rows, wave=wave), status_counts(a, rows)) for a in group}
    intents_commit(lease=lease, group=group, intents=rows, unsettle=touched, sized=sized)
    return Sized(made=_planned(rows), complete=True)


@dataclass(frozen=True, slots=True)
class Sized:
    """What one call of `create_intents` did: intents made to be sent, and whether the group is
    sized now (False: its first wave only)."""

    made: int
    complete: bool


def _entries(
    group: Sequence[Allocation],
    control: EngineControl,
    engine: Switches,
    clients: ClientCache,
    pool: FanOut,
    lease: Lease,
    children: list[ChildRow],
) -> list[IntentRow]:
    rows = entry_rows(group, control, engine, clients=clients, pool=pool, children=children)
    _stamp(group, rows, lease)
    return rows


def _whole_group(group: Sequence[Allocation]) -> list[Allocation]:
    """Every allocation of the group, whatever its status (the pending ones are a part of it)."""
    return list(Allocation.objects.filter(group_key=group[0].group_key))


def _stamp(
    group: Sequence[Allocation], rows: Sequence[IntentRow], lease: Lease, *, whole: Sequence[Allocation] = ()
) -> None:
    """The send wave (a hedge's sell legs after its buy legs, `whole` the group they belong to)
    and the sizing leader's epoch."""
    has_buy = any(a.side == Side.BUY for a in (whole or group))
    for m in rows:
        m.wave = 1 if has_buy and m.side == Side.SELL else 0
        m.epoch = lease.epoch


def _planned(rows: Sequence[IntentRow]) -> int:
    return sum(1 for m in rows if m.status == MappingStatus.PLANNED)
