"""Stage: size children — every unsized allocation (this tick's, or one a crash left behind)
gets its child intents, sized and tagged, in a transaction per group (`replication.allocation`)."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings

from replication import allocation
from replication.engine.context import TickContext
from replication.failpoints import failpoint
from replication.models import Allocation, AllocationKind, AllocationStatus
from replication.services.intents import intents_withdraw


def size_allocations(ctx: TickContext, *, first_wave: bool = False) -> int:
    """Create the child intents of every unsized allocation; returns how many were made to be sent.

    `first_wave`: an opening group with more eligible children than the pool's first wave
    (`FANOUT_FIRST_WAVE`) gets that wave's intents only, so that they can be on their way while
    the rest is sized: the send stage calls this again, without it, once they are.
    """
    # DISPATCHED and unsized: a group whose first wave was claimed (and maybe sent) before the
    # rest was sized, by this tick or by one that died in between.
    pending = list(
        Allocation.objects.filter(
            sized=False,
            status__in=(
                AllocationStatus.PLANNED,
                AllocationStatus.AWAITING_APPROVAL,
                AllocationStatus.DISPATCHED,
            ),
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
    wave = ctx.pool.first_wave if first_wave and settings.FANOUT_MODE != "queue" else 0
    created = 0
    for group in groups.values():
        sized = allocation.create_intents(
            group, lease=ctx.lease, control=ctx.control, clients=ctx.clients, pool=ctx.pool, first_wave=wave
        )
        created += sized.made
        failpoint("after_intent_commit" if sized.complete else "after_first_wave_commit")
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
