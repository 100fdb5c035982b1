"""Stage: size children — every unsized allocation (this tick's, or one a crash left behind)
gets its child intents, sized and tagged, in a transaction per group (`replication.allocation`)."""

from __future__ import annotations

from collections import defaultdict

from replication import allocation
from replication.engine.context import TickContext
from replication.failpoints import failpoint
from replication.models import Allocation, AllocationKind, AllocationStatus
from replication.services.intents import intents_withdraw


def size_allocations(ctx: TickContext) -> int:
    """Create the child intents of every unsized allocation; returns how many were made."""
    pending = list(
        Allocation.objects.filter(
            sized=False, status__in=(AllocationStatus.PLANNED, AllocationStatus.AWAITING_APPROVAL)
        ).order_by("id")
    )
    if not pending:
        return 0
    closes = [a for a in pending if a.kind == AllocationKind.CLOSE]
    if closes:
        _clear_before_exits(ctx, closes)
    groups: dict[str, list[Allocation]] = defaultdict(list)
    for a in pending:
        groups[a.group_key].append(a)
    created = 0
    for group in groups.values():
        created += allocation.create_intents(
            group, lease=ctx.lease, control=ctx.control, clients=ctx.clients, pool=ctx.pool
        )
        failpoint("after_intent_commit")
    return created


def _clear_before_exits(ctx: TickContext, closes: list[Allocation]) -> None:
    """Before exits are sized: withdraw or cancel the entries where the master went flat, and
    refresh the fills of every child with an order in flight there."""
    flight = allocation.in_flight(closes)
    intents_withdraw(
        flight.withdraw,
        lease=ctx.lease,
        reason="master went flat before it was sent",
        reason_code="master_flat",
        why="master went flat",
    )
    if flight.cancel:
        ctx.sender.cancel_open(
            flight.cancel, reason="master went flat; a late fill must not leave the child holding"
        )
    if flight.children:
        ctx.sender.follow_up(children=flight.children, recover=True)
