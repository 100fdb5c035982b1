"""Margin snapshots (U, A, C) of masters and children, and the master's stored positions.

A snapshot is an observation, not a decision: it is written in autocommit (no transaction, no
lease check), as the engine wrote it before these services. A child's margins are also read
outside any tick (`tasks`), with no lease to check.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from accounts.models import Account
from replication.bulk import batch_size
from replication.models import MarginSnapshot, MasterPosition, TickRun


def snapshot_record(
    *,
    account: Account,
    used_margin: Decimal,
    available_margin: Decimal,
    capital: Decimal,
    tick: TickRun | None = None,
) -> MarginSnapshot:
    """Store one reading of an account's funds."""
    return MarginSnapshot.objects.create(
        account=account,
        used_margin=used_margin,
        available_margin=available_margin,
        capital=capital,
        tick=tick,
    )


def snapshots_record(*, snapshots: Sequence[MarginSnapshot]) -> list[MarginSnapshot]:
    """Store a batch of unsaved readings (the engine reads children's funds concurrently)."""
    return MarginSnapshot.objects.bulk_create(snapshots, batch_size=batch_size(MarginSnapshot))


def master_positions_forget(*, account: Account) -> int:
    """Drop the positions stored for this account as master; its next look as master reads them afresh.

    Call inside the transaction that changes the master (see `accounts.services.account_promote_master`).
    """
    deleted, _ = MasterPosition.objects.filter(account=account).delete()
    return deleted
