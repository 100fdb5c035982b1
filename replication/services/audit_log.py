"""The audit log's one writer: every `ReplicationEvent` is written here, with a kind from `EventKind`.

`audit(...)` writes one row; `audit_row(...)` builds an unsaved one and `audit_rows(rows)` writes a
batch (the engine's per-outcome rows). Call them inside the transaction that makes the change being
recorded, so the change and its row commit or roll back together. A kind that is not an `EventKind`
member is refused (`UnknownEventKind`) before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from replication.bulk import insert_rows
from replication.models import LEGACY_EVENT_KINDS, EventKind, ReplicationEvent

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


def audit_rows(rows: Iterable[ReplicationEvent]) -> int:
    """Append a batch of rows built by `audit_row`; returns how many. Kinds are checked again (a row
    built elsewhere is refused). One INSERT without reading ids back (`replication.bulk.insert_rows`):
    the engine writes one row per order outcome."""
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
