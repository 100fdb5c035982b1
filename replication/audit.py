"""Writing audit rows. Call inside the transaction that makes the change being recorded."""

from __future__ import annotations

from typing import Any

from replication.models import ReplicationEvent

REDACTED = "***"


def audit(
    *,
    kind: str,
    message: str = "",
    actor: str = "engine",
    data: dict[str, Any] | None = None,
    **links: Any,
) -> ReplicationEvent:
    """Append one ReplicationEvent. `links` are account/allocation/mapping/master_order."""
    return ReplicationEvent.objects.create(kind=kind, message=message, actor=actor, data=data or {}, **links)


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
