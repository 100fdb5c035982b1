"""Stage: follow up — child orders still open, and sends whose outcome is unknown or that a
crash interrupted, are read back from each child's book (by tag first: never sent blindly)."""

from __future__ import annotations

from replication.engine.context import TickContext


def follow_up(ctx: TickContext) -> int:
    """Refresh open child orders and recover unknown outcomes; returns how many changed."""
    return ctx.sender.follow_up(recover=True)
