"""Stage: send through the one send gate — here in the bounded pool, or (queue mode) one
django-q2 task per shard of children (DESIGN §7). Every intent passes the gate as it is claimed:
a halted engine's intents are held there, with their reasons, rather than left to go out later."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings

from replication.engine.context import TickContext


def send(ctx: TickContext, *, meanwhile: Callable[[], None] | None = None) -> None:
    """Dispatch the committed intents; a halted engine dispatches here (the gate holds them).
    `meanwhile` runs once the first wave is on its way (the rest of the sizing), before the rest
    is loaded and claimed: whatever it commits is sent in this dispatch."""
    if settings.FANOUT_MODE == "queue" and not ctx.control.halted:
        if meanwhile is not None:
            meanwhile()
        ctx.result.queued_shards += _enqueue_shards(ctx)
    else:
        ctx.result.dispatch.merge(ctx.sender.dispatch(meanwhile=meanwhile))


def _enqueue_shards(ctx: TickContext) -> int:
    """Queue mode: one `dispatch_shard` task per shard with intents ready.

    The database stays the truth: a lost task leaves its intents PLANNED (queued again after
    `QUEUE_REQUEUE_SECONDS`), a repeated one finds them already claimed and does nothing.
    """
    from django_q.tasks import async_task

    lease, queued_at = ctx.lease, ctx.state.queued_at
    count = max(1, int(settings.FANOUT_SHARDS))
    requeue = float(settings.QUEUE_REQUEUE_SECONDS)
    now = time.monotonic()
    queued = 0
    for shard in ctx.sender.planned_shards(count):
        if now - queued_at.get(shard, -requeue) < requeue:
            continue
        queued_at[shard] = now
        async_task(
            "replication.tasks.dispatch_shard",
            shard,
            count,
            lease.holder,
            lease.epoch,
            lease.ttl.total_seconds(),
            task_name=f"dispatch shard {shard}/{count} epoch {lease.epoch}",
            group="dispatch",
        )
        queued += 1
    return queued
