"""Tick runs: one row per pass of the orchestrator, opened when it holds the lease, closed at the end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.utils import timezone

from replication.lease import Lease
from replication.models import TickRun


def tick_start(*, lease: Lease) -> TickRun:
    """Open the tick's row under this lease (holder and epoch as the lease has them).

    No transaction and no lease check: the lease was taken just now, and the row only records the
    pass (a lost lease shows in `tick_finish`'s outcome).
    """
    return TickRun.objects.create(holder=lease.holder, epoch=lease.epoch)


def tick_finish(
    *,
    tick: TickRun,
    outcome: TickRun.Outcome,
    duration_ms: int,
    counts: Mapping[str, object],
    errors: Sequence[str],
) -> None:
    """Close the tick's row with what it did. Written even when the lease was lost: it records that."""
    TickRun.objects.filter(pk=tick.pk).update(
        finished_at=timezone.now(),
        duration_ms=duration_ms,
        outcome=outcome,
        counts=dict(counts),
        error="\n".join(errors)[:4000],
    )
