"""The engine's state on accounts, written under the lease: needs-login, failures and the breaker.

The rows are accounts' (`accounts.services.engine_state` writes them with their audit rows); these
are the engine's entry points: each checks the lease in the same transaction, so a leader that lost
the lease changes nothing (`LeaseLost`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from django.db import transaction

from accounts.services import engine_state
from replication.lease import Lease, lease_check


def accounts_mark_needs_login(*, lease: Lease, account_ids: Sequence[int], reason: str) -> list[int]:
    """Move these accounts to NEEDS_LOGIN (audited, `account.login_needed`); returns the ids moved."""
    with transaction.atomic():
        lease_check(lease)
        return engine_state.account_mark_needs_login(account_ids=account_ids, reason=reason)


def accounts_record_send_results(
    *, lease: Lease, ok: Collection[int], failed: Collection[int], breaker_threshold: int
) -> list[int]:
    """Count failed orders per account and trip breakers (audited); returns the ids tripped now."""
    with transaction.atomic():
        lease_check(lease)
        return engine_state.account_record_send_results(
            ok=ok, failed=failed, breaker_threshold=breaker_threshold
        )
