"""Single-leader lease: one row, taken over by conditional update, every engine write checks it.

A second orchestrator waits and never acts. Taking an expired lease bumps the epoch; a leader that
lost its lease (paused, partitioned, slow) finds its epoch stale inside its next write transaction
and that transaction is refused (`LeaseLost`), so nothing it decided is committed or sent.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from replication.models import OrchestratorLease

LEASE_NAME = "orchestrator"
DEFAULT_TTL = timedelta(seconds=15)


class LeaseLost(Exception):
    """This process is no longer the leader; its write was refused."""


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    epoch: int
    expires_at: datetime
    ttl: timedelta = DEFAULT_TTL


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def lease_acquire(
    *, holder: str, ttl: timedelta = DEFAULT_TTL, now: datetime | None = None, current: Lease | None = None
) -> Lease | None:
    """Take or renew the lease. Returns it, or None when another live holder has it.

    With `current` (the lease this process held last tick) a renewal is one conditional update.
    """
    now = now or timezone.now()
    expires = now + ttl
    if current is not None and current.holder == holder:
        kept = OrchestratorLease.objects.filter(
            name=LEASE_NAME, holder=holder, epoch=current.epoch, expires_at__gte=now
        ).update(expires_at=expires, heartbeat_at=now)
        if kept:
            return Lease(holder=holder, epoch=current.epoch, expires_at=expires, ttl=ttl)
    OrchestratorLease.objects.get_or_create(name=LEASE_NAME)
    renewed = OrchestratorLease.objects.filter(name=LEASE_NAME, holder=holder).update(
        expires_at=expires, heartbeat_at=now
    )
    if not renewed:
        took = OrchestratorLease.objects.filter(
            Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now), name=LEASE_NAME
        ).update(holder=holder, epoch=F("epoch") + 1, expires_at=expires, heartbeat_at=now)
        if not took:
            return None
    row = OrchestratorLease.objects.get(name=LEASE_NAME)
    if row.holder != holder:
        return None
    return Lease(holder=holder, epoch=row.epoch, expires_at=expires, ttl=ttl)


def lease_release(*, lease: Lease) -> None:
    OrchestratorLease.objects.filter(name=LEASE_NAME, holder=lease.holder, epoch=lease.epoch).update(
        holder="", expires_at=None
    )


def lease_check(lease: Lease) -> None:
    """Call inside a write transaction: refuse it unless this lease is still the current one.

    On PostgreSQL the row is locked (`FOR UPDATE`) so a takeover waits for the transaction; on
    SQLite the transaction is IMMEDIATE, which serialises writers the same way.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("lease_check must run inside the write transaction it guards")
    row = (
        OrchestratorLease.objects.select_for_update()
        .filter(name=LEASE_NAME)
        .values("holder", "epoch", "expires_at")
        .first()
    )
    if row is None or row["holder"] != lease.holder or row["epoch"] != lease.epoch:
        raise LeaseLost(f"lease epoch {lease.epoch} of {lease.holder} is no longer current")
    now = timezone.now()
    if row["expires_at"] is not None and row["expires_at"] < now:
        raise LeaseLost(f"lease epoch {lease.epoch} of {lease.holder} expired")
    # Every guarded write is also a heartbeat: a long tick keeps its lease while it makes progress.
    OrchestratorLease.objects.filter(name=LEASE_NAME, holder=lease.holder, epoch=lease.epoch).update(
        expires_at=now + lease.ttl, heartbeat_at=now
    )
