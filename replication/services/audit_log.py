"""The audit log's one writer: every `ReplicationEvent` is written here, with a kind from `EventKind`.

`audit(...)` writes one row; `audit_row(...)` builds an unsaved one and `audit_rows(rows)` writes a
batch (the engine's per-outcome rows). Call them inside the transaction that makes the change being
recorded, so the change and its row commit or roll back together. A kind that is not an `EventKind`
member is refused (`UnknownEventKind`) before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from replication.bulk import insert_rows
from replication.models import LEGACY_EVENT_KINDS, EventKind, ReplicationEvent

__all__ = [
    "REDACTED",
    "AuditRow",
    "EventKind",
    "UnknownEventKind",
    "audit",
    "audit_row",
    "audit_row_for",
    "audit_rows",
    "changes",
    "event_kind",
]

REDACTED = "***"


class UnknownEventKind(ValueError):
    """An audit row was asked for with a kind the vocabulary does not have."""


def event_kind(kind: EventKind | str) -> EventKind:
    """The member for `kind`; refuses anything outside `EventKind` (old spellings included)."""
    try:
        return EventKind(kind)
    except ValueError:
        if kind in LEGACY_EVENT_KINDS:
            raise UnknownEventKind(
                f"{kind!r} is an old spelling: write {LEGACY_EVENT_KINDS[kind].value!r}"
            ) from None
        raise UnknownEventKind(f"{kind!r} is not an EventKind") from None


def audit_row(
    *,
    kind: EventKind | str,
    message: str = "",
    actor: str = "engine",
    data: dict[str, Any] | None = None,
    **links: Any,
) -> ReplicationEvent:
    """An unsaved row for `audit_rows`. `links`: account/allocation/mapping/master_order (or `_id`)."""
    return ReplicationEvent(kind=event_kind(kind), message=message, actor=actor, data=data or {}, **links)


@dataclass(slots=True)
class AuditRow:
    """An unsaved `ReplicationEvent` as `audit_rows` inserts it (attribute names are the table's
    columns; `created_at` stamped when built, as the model's default does): for the engine's
    per-order rows, which need no model instance."""

    kind: EventKind
    account_id: int | None = None
    allocation_id: int | None = None
    mapping_id: int | None = None
    master_order_id: int | None = None
    message: str = ""
    actor: str = "engine"
    data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=timezone.now)


def audit_row_for(
    *,
    kind: EventKind | str,
    account_id: int | None = None,
    allocation_id: int | None = None,
    mapping_id: int | None = None,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> AuditRow:
    """`audit_row` by ids, for `audit_rows`: the same row, without building a model instance."""
    return AuditRow(
        kind=event_kind(kind),
        account_id=account_id,
        allocation_id=allocation_id,
        mapping_id=mapping_id,
        message=message,
        data=data or {},
    )


def audit(
    *,
    kind: EventKind | str,
    message: str = "",
    actor: str = "engine",
    data: dict[str, Any] | None = None,
    **links: Any,
) -> ReplicationEvent:
    """Append one audit row. `links` are account/allocation/mapping/master_order (or their `_id`)."""
    row = audit_row(kind=kind, message=message, actor=actor, data=data, **links)
    row.save(force_insert=True)
    return row


def audit_rows(rows: Iterable[ReplicationEvent | AuditRow]) -> int:
    """Append a batch of rows built by `audit_row` or `audit_row_for`; returns how many. Kinds are
    checked again (a row built elsewhere is refused). One INSERT without reading ids back
    (`replication.bulk.insert_rows`): the engine writes one row per order outcome."""
    batch = list(rows)
    for row in batch:
        row.kind = event_kind(row.kind)
    return insert_rows(ReplicationEvent, batch)


def changes(
    before: dict[str, Any], after: dict[str, Any], *, secret_fields: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A JSON-able before -> after diff; secret fields show only that they changed."""
    diff: dict[str, Any] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in secret_fields:
            diff[name] = {"before": REDACTED if old else "", "after": REDACTED if new else ""}
        else:
            diff[name] = {"before": _jsonable(old), "after": _jsonable(new)}
    return diff


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
