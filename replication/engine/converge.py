"""Stage: converge owed exits — exits still owed (failed, skipped, held back, or the master out
through a second order) are planned for every child that can trade now (DESIGN §3.7)."""

from __future__ import annotations

import time

from django.utils import timezone

from replication.convergence import (
    ConvergeReport,
    converge,
    resting_copies_beyond_held,
    stale_mirrors,
    sweep_due,
)
from replication.engine.context import TickContext


def converge_owed(ctx: TickContext) -> ConvergeReport:
    """Plan the owed exits (a full sweep every `CONVERGE_SWEEP_SECONDS`); the tick sends them."""
    now_mono = time.monotonic()
    sweep = sweep_due(ctx.state.last_sweep, now_mono)
    if sweep:
        ctx.state.last_sweep = now_mono
    return converge(lease=ctx.lease, tick_id=ctx.tick.pk, clients=ctx.clients, sweep=sweep)


def cancel_stale_mirrors(ctx: TickContext) -> int:
    """Cancel again the child orders whose master order was cancelled but whose own cancel was held
    back or failed, once the child can trade: a stale mirror never stands in for an owed exit."""
    stale = stale_mirrors(now=timezone.now(), retries=ctx.state.stale_retries)
    if not stale:
        return 0
    return ctx.sender.cancel_open(stale, reason="master order cancelled (the cancel sent again)")


def trim_resting_copies(ctx: TickContext) -> int:
    """Cut children's copies of resting master exits to what they hold (see
    `resting_copies_beyond_held`); returns how many changes were sent."""
    cancels, changes = resting_copies_beyond_held(retry=ctx.state.trim_retry)
    sent = 0
    if changes:
        sent += ctx.sender.modify_open(
            changes, reason="copy of a resting master exit cut to what the child holds"
        )
    if cancels:
        sent += ctx.sender.cancel_open(
            cancels, reason="copy of a resting master exit cancelled: the child holds nothing it would close"
        )
    return sent
