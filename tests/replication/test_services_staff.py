"""Issue 13 item 2: staff decisions (approve, reject, flatten, engine controls) write their rows and
their audit row (an `EventKind`) in one transaction: when the audit row cannot be written, nothing
of the change remains.
"""

from __future__ import annotations

import pytest

from replication.controls import engine_control_get, engine_control_update
from replication.models import (
    Allocation,
    AllocationStatus,
    EventKind,
    MappingStatus,
    OrderMapping,
    ReplicationEvent,
)
from replication.services import allocation_approve, allocation_reject, child_flatten
from tests.engine_helpers import FUT

pytestmark = pytest.mark.django_db


@pytest.fixture
def held(desk, orch) -> Allocation:
    """An entry held for a staff decision (approval mode), its four intents sized and PLANNED."""
    engine_control_update(actor="ops", approval_mode=True)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    alloc = Allocation.objects.get()
    assert alloc.status == AllocationStatus.AWAITING_APPROVAL
    return alloc


@pytest.fixture
def audit_fails(monkeypatch):
    """Every single audit row write fails (as a database error would)."""

    def refuse(self: ReplicationEvent, *args: object, **kwargs: object) -> None:
        raise RuntimeError("audit write failed")

    def arm() -> None:
        monkeypatch.setattr(ReplicationEvent, "save", refuse)

    return arm


def _planned(alloc: Allocation) -> int:
    return OrderMapping.objects.filter(allocation=alloc, status=MappingStatus.PLANNED).count()


def test_allocation_decisions_audited_with_enum_kinds(held):
    """Issue 13 item 2: approve and reject each write one row whose kind is the EventKind member."""
    before = ReplicationEvent.objects.count()
    allocation_approve(allocation=held, actor="staff")
    row = ReplicationEvent.objects.order_by("-id").first()
    assert row is not None and row.kind == EventKind.ALLOCATION_APPROVED and row.allocation_id == held.pk
    assert ReplicationEvent.objects.count() == before + 1


def test_allocation_reject_rolls_back_when_its_audit_row_fails(held, audit_fails):
    """Issue 13 item 2: reject's status change and withdrawn intents roll back with its audit row."""
    planned = _planned(held)
    assert planned > 0
    audit_fails()
    with pytest.raises(RuntimeError):
        allocation_reject(allocation=held, actor="staff", reason="not today")
    held.refresh_from_db()
    assert held.status == AllocationStatus.AWAITING_APPROVAL
    assert _planned(held) == planned


def test_allocation_approve_rolls_back_when_its_audit_row_fails(held, audit_fails):
    """Issue 13 item 2: approve's status change rolls back with its audit row."""
    audit_fails()
    with pytest.raises(RuntimeError):
        allocation_approve(allocation=held, actor="staff")
    held.refresh_from_db()
    assert held.status == AllocationStatus.AWAITING_APPROVAL


def test_child_flatten_rolls_back_when_its_audit_row_fails(desk, orch, audit_fails):
    """Issue 13 item 2: a flatten's allocations and intents exist only with its `child_flattened` row."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()
    allocations = Allocation.objects.count()
    audit_fails()
    with pytest.raises(RuntimeError):
        child_flatten(child=desk.children["C2"], actor="carol", reason="client asked to exit")
    assert Allocation.objects.count() == allocations
    assert not OrderMapping.objects.filter(reason_code="flatten").exists()


def test_engine_control_change_rolls_back_when_its_audit_row_fails(db, audit_fails):
    """Issue 13 item 2: a kill switch only changes with its `engine.control_changed` row."""
    engine_control_get()
    audit_fails()
    with pytest.raises(RuntimeError):
        engine_control_update(actor="ops", halted=True)
    assert engine_control_get().halted is False
