"""Stage: converge owed exits — exits still owed (failed, skipped, held back, or the master out
through a second order) are planned for every child that can trade now (DESIGN §3.7)."""

from __future__ import annotations

import time

from replication.convergence import ConvergeReport, converge, sweep_due
from replication.engine.context import TickContext


def converge_owed(ctx: TickContext) -> ConvergeReport:
    """Plan the owed exits (a full sweep every `CONVERGE_SWEEP_SECONDS`); the tick sends them."""
    now_mono = time.monotonic()
    sweep = sweep_due(ctx.state.last_sweep, now_mono)
    if sweep:
        ctx.state.last_sweep = now_mono
    return converge(lease=ctx.lease, tick_id=ctx.tick.pk, clients=ctx.clients, sweep=sweep)
