"""The engine's state on accounts: consecutive failures, the breaker, needs-login.

The engine reaches these through `replication.services` (which checks its lease first); each one is
atomic and writes its audit rows (`EventKind`) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, AccountStatus
from replication.services.audit_log import EventKind, audit_row, audit_rows


def account_mark_needs_login(*, account_ids: Sequence[int], reason: str) -> list[int]:
    """Move these accounts to NEEDS_LOGIN (skipped and shown until they log in); one audit row each.

    Accounts already needing a login, and disabled ones, stay as they are. Returns the ids moved.
    """
    with transaction.atomic():
        moved = list(
            Account.objects.filter(pk__in=account_ids)
            .exclude(status__in=(AccountStatus.NEEDS_LOGIN, AccountStatus.DISABLED))
            .values_list("pk", flat=True)
        )
        Account.objects.filter(pk__in=moved).update(status=AccountStatus.NEEDS_LOGIN)
        audit_rows(
            audit_row(
                kind=EventKind.ACCOUNT_LOGIN_NEEDED,
                account_id=pk,
                message=reason,
                data={"status": {"after": AccountStatus.NEEDS_LOGIN}},
            )
            for pk in moved
        )
    return moved


def account_record_send_results(
    *, ok: Collection[int], failed: Collection[int], breaker_threshold: int, now: datetime | None = None
) -> list[int]:
    """Count consecutive failed orders per account; trip the breaker at `breaker_threshold`.

    An account with a good result starts counting again from zero. An account reaching the threshold
    gets `breaker_tripped_at` (entries paused, exits continue) and one audit row. Returns the ids
    tripped now.
    """
    now = now or timezone.now()
    tripped: list[int] = []
    with transaction.atomic():
        if ok:
            Account.objects.filter(pk__in=ok, consecutive_failures__gt=0).update(consecutive_failures=0)
        if failed:
            Account.objects.filter(pk__in=failed).update(consecutive_failures=F("consecutive_failures") + 1)
            tripped = list(
                Account.objects.filter(
                    pk__in=failed,
                    consecutive_failures__gte=breaker_threshold,
                    breaker_tripped_at__isnull=True,
                ).values_list("pk", flat=True)
            )
            if tripped:
                Account.objects.filter(pk__in=tripped).update(breaker_tripped_at=now)
                audit_rows(
                    audit_row(
                        kind=EventKind.BREAKER_TRIPPED,
                        account_id=pk,
                        message=f"{breaker_threshold} failed orders in a row: entries paused, "
                        "exits continue; resume the account to reset",
                    )
                    for pk in tripped
                )
    return tripped
