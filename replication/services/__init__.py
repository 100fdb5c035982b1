"""The engine's write layer: the only writer of engine rows, one module per entity.

Each service is atomic, writes its audit row (`EventKind`) in the same transaction, and checks the
lease where the engine calls it. Reads live in `replication.selectors`.

- `audit_log`: the audit log (`audit`, `audit_row`, `audit_rows`, `changes`, `EventKind`)
- `allocations`: staff decisions on held allocations
- `corrections`: corrective orders (reconciliation)
- `flatten`: flattening a child
- `accounts`: the engine's state on accounts (needs-login, failures, breaker), lease-checked
- `snapshots`: margin snapshots and the master's stored positions
- `ticks`: tick runs

Names load lazily (PEP 562 `__getattr__`): a module low in the engine (controls, the lease) can
import `replication.services.audit_log` without loading every service and the engine modules they
call. `from replication.services import X` works for every name in `__all__`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS: dict[str, str] = {
    "master_positions_forget": "replication.services.snapshots",
    "snapshots_record": "replication.services.snapshots",
    "snapshot_record": "replication.services.snapshots",
    "tick_finish": "replication.services.ticks",
    "tick_start": "replication.services.ticks",
    "accounts_record_send_results": "replication.services.accounts",
    "accounts_mark_needs_login": "replication.services.accounts",
    "EventKind": "replication.models",
    "AllocationDecisionError": "replication.services.allocations",
    "allocation_approve": "replication.services.allocations",
    "allocation_reject": "replication.services.allocations",
    "UnknownEventKind": "replication.services.audit_log",
    "audit": "replication.services.audit_log",
    "audit_row": "replication.services.audit_log",
    "audit_rows": "replication.services.audit_log",
    "changes": "replication.services.audit_log",
    "event_kind": "replication.services.audit_log",
    "CorrectionError": "replication.services.corrections",
    "CorrectionPlan": "replication.services.corrections",
    "correction_plan": "replication.services.corrections",
    "reconciliation_correct": "replication.services.corrections",
    "FlattenLeg": "replication.services.flatten",
    "FlattenPlan": "replication.services.flatten",
    "child_flatten": "replication.services.flatten",
    "flatten_plan": "replication.services.flatten",
}

if TYPE_CHECKING:
    from replication.models import EventKind
    from replication.services.accounts import accounts_mark_needs_login, accounts_record_send_results
    from replication.services.allocations import (
        AllocationDecisionError,
        allocation_approve,
        allocation_reject,
    )
    from replication.services.audit_log import (
        UnknownEventKind,
        audit,
        audit_row,
        audit_rows,
        changes,
        event_kind,
    )
    from replication.services.corrections import (
        CorrectionError,
        CorrectionPlan,
        correction_plan,
        reconciliation_correct,
    )
    from replication.services.flatten import FlattenLeg, FlattenPlan, child_flatten, flatten_plan
    from replication.services.snapshots import master_positions_forget, snapshot_record, snapshots_record
    from replication.services.ticks import tick_finish, tick_start

__all__ = [
    "AllocationDecisionError",
    "CorrectionError",
    "CorrectionPlan",
    "EventKind",
    "FlattenLeg",
    "FlattenPlan",
    "UnknownEventKind",
    "accounts_mark_needs_login",
    "accounts_record_send_results",
    "allocation_approve",
    "allocation_reject",
    "audit",
    "audit_row",
    "audit_rows",
    "changes",
    "child_flatten",
    "correction_plan",
    "event_kind",
    "flatten_plan",
    "master_positions_forget",
    "reconciliation_correct",
    "snapshot_record",
    "snapshots_record",
    "tick_finish",
    "tick_start",
]


def __getattr__(name: str) -> object:
    """Load a service on first use (see the module docstring)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
