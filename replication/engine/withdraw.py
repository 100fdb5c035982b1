"""Withdraw planned intents: never sent, cancelled with the reason, one audit row each."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from replication.lease import Lease, lease_check
from replication.models import MappingStatus, OrderMapping
from replication.services.audit_log import EventKind, audit_row, audit_rows


def intents_withdraw(
    mappings: Sequence[OrderMapping], *, lease: Lease, reason: str, reason_code: str, why: str
) -> None:
    """Cancel these PLANNED intents before they are sent (`reason` on the row, `why` in the
    audit message: "<tag> withdrawn: <why>"), in one lease-checked transaction."""
    if not mappings:
        return
    with transaction.atomic():
        lease_check(lease)
        now = timezone.now()
        for m in mappings:
            m.set_status(MappingStatus.CANCELLED)
            m.reason, m.reason_code, m.finished_at = reason, reason_code, now
        OrderMapping.objects.bulk_update(mappings, ["status", "reason", "reason_code", "finished_at"])
        audit_rows(
            audit_row(
                kind=EventKind.INTENT_WITHDRAWN,
                account_id=m.child_id,
                allocation_id=m.allocation_id,
                mapping_id=m.pk,
                message=f"{m.tag} withdrawn: {why}",
            )
            for m in mappings
        )
