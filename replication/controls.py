"""The global kill switches (one EngineControl row): reading them and changing them with an audit row."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from replication.models import EngineControl
from replication.services.audit_log import EventKind, audit, changes

FLAGS = ("paused", "halted", "dry_run", "approval_mode")


class EngineControlError(ValueError):
    """A refused kill-switch change (unknown flag or a value that is not a bool)."""


def engine_control_get() -> EngineControl:
    """The kill-switch row (created all off on first use)."""
    control = EngineControl.objects.order_by("pk").first()
    return control or EngineControl.objects.create()


def engine_control_update(*, actor: str, **flags: bool) -> EngineControl:
    """Set any of paused / halted / dry_run / approval_mode; one audit row when something changed."""
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise EngineControlError(f"unknown engine flags: {', '.join(unknown)}")
    if any(not isinstance(value, bool) for value in flags.values()):
        raise EngineControlError("engine flags must be true or false")
    with transaction.atomic():
        control = EngineControl.objects.select_for_update().order_by("pk").first()
        if control is None:
            control = EngineControl.objects.create()
        before: dict[str, Any] = {name: getattr(control, name) for name in FLAGS}
        for name, value in flags.items():
            setattr(control, name, value)
        delta = changes(before, {name: getattr(control, name) for name in FLAGS})
        if delta:
            control.updated_by = actor
            control.save(update_fields=[*delta, "updated_by", "updated_at"])
            switched = ", ".join(f"{name} {'on' if getattr(control, name) else 'off'}" for name in delta)
            audit(
                kind=EventKind.ENGINE_CONTROL_CHANGED, message=f"engine: {switched}", actor=actor, data=delta
            )
    return control
