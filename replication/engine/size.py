"""Stage: size children — every unsized allocation (this tick's, or one a crash left behind)
gets its child intents, sized and tagged, in a transaction per group (`replication.allocator`)."""

from __future__ import annotations

from collections import defaultdict

from replication import allocator
from replication.engine.context import TickContext
from replication.failpoints import failpoint
from replication.models import Allocation, AllocationKind, AllocationStatus


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
        allocator.prepare_exits(closes, ctx.sender)
    groups: dict[str, list[Allocation]] = defaultdict(list)
    for a in pending:
        groups[a.group_key].append(a)
    created = 0
    for group in groups.values():
        created += allocator.create_intents(
            group, lease=ctx.lease, control=ctx.control, replicator=ctx.sender
        )
        failpoint("after_intent_commit")
    return created
