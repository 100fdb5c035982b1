"""DESIGN §3.5: a child's mirror still open after the master's order filled.

Per child, `pending_policy`: `leave` (the default) keeps the LIMIT / SL order working at the
master's price; `market_after_seconds` converts it to MARKET once `market_after_seconds` have passed
since the engine saw the master's order(s) of that allocation complete, so the child is not left
behind a master that is already in (or out of) the position.

Only open, acknowledged child orders of active or paused children are converted (paused children
still get sync; halted ones and those needing a login get nothing). A conversion the broker
refuses is tried again at most once per `RETRY_SECONDS`, not every tick.

An exit is owed until done (§3.7), so an exit mirror is not left working under `leave` once the
child is entitled to nothing on the side it closes (the master is flat there, or the exit rule left
the child nothing): `exit_mirrors_owed_as_market`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta

from accounts.models import AccountStatus, PendingPolicy
from brokers.types import OrderStatus, OrderType, Side
from replication.clients import CHILD_SECRETS
from replication.entitlement import entitled
from replication.gate import Action, Switches, child_switches, decide
from replication.models import (
    Allocation,
    AllocationKind,
    MappingStatus,
    MasterOrder,
    MasterPosition,
    OrderMapping,
)

RETRY_SECONDS = 30.0
CONVERTIBLE_TYPES = (OrderType.LIMIT, OrderType.SL, OrderType.SLM)


def master_fill_times(allocation_ids: set[int]) -> dict[int, datetime]:
    """When each allocation's master side was complete: the latest fill of its master orders,
    for allocations whose linked master orders are all COMPLETE (others are left out)."""
    latest: dict[int, datetime] = {}
    incomplete: set[int] = set()
    rows = MasterOrder.objects.filter(allocations__in=allocation_ids).values_list(
        "allocations", "status", "filled_at"
    )
    for allocation_id, status, filled_at in rows:
        if status != OrderStatus.COMPLETE or filled_at is None:
            incomplete.add(allocation_id)
        elif allocation_id not in latest or filled_at > latest[allocation_id]:
            latest[allocation_id] = filled_at
    return {pk: at for pk, at in latest.items() if pk not in incomplete}


def mirrors_due_for_market(*, now: datetime) -> list[tuple[OrderMapping, int]]:
    """Open child mirrors to convert now, each with the seconds since the master's fill.

    Runs every tick: the candidates come from one plain query (no join to the master orders,
    which would need DISTINCT and costs a PostgreSQL tick several milliseconds); whether their
    master side is complete is `master_fill_times`' answer."""
    candidates = list(
        OrderMapping.objects.filter(
            status=MappingStatus.OPEN,
            order_type__in=CONVERTIBLE_TYPES,
            child__pending_policy=PendingPolicy.MARKET_AFTER_SECONDS,
            child__status__in=(AccountStatus.ACTIVE, AccountStatus.PAUSED),
        )
        .exclude(broker_order_id="")
        .select_related("child", "allocation")
        .defer(*CHILD_SECRETS)
        .order_by("id")
    )
    if not candidates:
        return []
    filled = master_fill_times({m.allocation_id for m in candidates})
    due = []
    for m in candidates:
        at = filled.get(m.allocation_id)
        if at is not None and now - at >= timedelta(seconds=m.child.market_after_seconds):
            due.append((m, int((now - at).total_seconds())))
    return due


def _master_flat(allocation_ids: set[int]) -> set[int]:
    """Those exit allocations whose master now holds nothing in their instrument (its stored
    positions): the master got out by other orders while the exit's own order still rests."""
    if not allocation_ids:
        return set()
    rows = Allocation.objects.filter(pk__in=allocation_ids).values_list(
        "pk", "master_id", "exchange", "tradingsymbol", "product"
    )
    held = {
        (a, ex, sym, prod): q
        for a, ex, sym, prod, q in MasterPosition.objects.filter(
            account_id__in={r[1] for r in rows}
        ).values_list("account_id", "exchange", "tradingsymbol", "product", "quantity")
    }
    # No stored position is not "flat": only a position the engine stored as 0 counts.
    return {pk for pk, master, ex, sym, prod in rows if held.get((master, ex, sym, prod)) == 0}


def exit_mirrors_owed_as_market() -> list[OrderMapping]:
    """Open LIMIT / SL exit mirrors to make MARKET now, whatever the child's pending policy: the
    master's order of the exit is complete (or the master holds nothing there any more: it got
    out by other orders while that one still rests) and the child is entitled to nothing on the
    side the mirror closes (DESIGN §3.4: a master flat there sets the entitlement to 0; §3.7: an exit is
    owed until done). Such a mirror sent late (a timeout then a resend, a crash, a child held back)
    sits at a price the market has left; the convergence stage counts it as the exit working, so
    it would keep the child holding after the master is out. Only children the send gate lets
    modify now are returned (a held child adds no audit row per tick)."""
    candidates = list(
        OrderMapping.objects.filter(
            status=MappingStatus.OPEN,
            order_type__in=CONVERTIBLE_TYPES,
            allocation__kind=AllocationKind.CLOSE,
        )
        .exclude(broker_order_id="")
        .select_related("child", "allocation")
        .defer(*CHILD_SECRETS)
        .order_by("id")
    )
    if not candidates:
        return []
    filled = master_fill_times({m.allocation_id for m in candidates})
    flat = _master_flat({m.allocation_id for m in candidates if m.allocation_id not in filled})
    engine = Switches.read()
    switches = child_switches({m.child_id for m in candidates})
    candidates = [
        m
        for m in candidates
        if (m.allocation_id in filled or m.allocation_id in flat)
        and (sw := switches.get(m.child_id)) is not None
        and decide(Action.MODIFY, engine, sw).send
    ]
    if not candidates:
        return []
    e = entitled(  # from what filled: a new entry resting on the other side entitles nothing yet
        {(m.exchange, m.tradingsymbol, m.product) for m in candidates},
        children=sorted({m.child_id for m in candidates}),
        in_flight=False,
    )
    due = []
    for m in candidates:
        left = e.get((m.child_id, m.exchange, m.tradingsymbol, m.product), 0)
        # A SELL closes a long: owed in full when nothing long is entitled; a BUY likewise.
        if (left <= 0) if m.side == Side.SELL else (left >= 0):
            due.append(m)
    return due


class RetryGate:
    """Remembers conversions tried recently, so a refused one is retried at most every RETRY_SECONDS."""

    def __init__(self, every: float = RETRY_SECONDS) -> None:
        self.every = every
        self._tried: dict[int, float] = defaultdict(lambda: float("-inf"))

    def take(self, mapping_ids: list[int]) -> set[int]:
        now = time.monotonic()
        allowed = {pk for pk in mapping_ids if now - self._tried[pk] >= self.every}
        for pk in allowed:
            self._tried[pk] = now
        return allowed
