"""Compatibility: the audit writer is `replication.services.audit_log`; use `replication.services`."""

from __future__ import annotations

from replication.models import EventKind
from replication.services.audit_log import (
    REDACTED,
    UnknownEventKind,
    audit,
    audit_row,
    audit_rows,
    changes,
    event_kind,
)

__all__ = [
    "REDACTED",
    "EventKind",
    "UnknownEventKind",
    "audit",
    "audit_row",
    "audit_rows",
    "changes",
    "event_kind",
]
