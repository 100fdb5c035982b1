"""The engine's write layer: the only writer of engine rows, one module per entity.

Each service is atomic, writes its audit row (`EventKind`) in the same transaction, and checks the
lease where the engine calls it. Reads live in `replication.selectors`.

- `audit_log`: the audit log (`audit`, `audit_row`, `audit_rows`, `changes`, `EventKind`)
- `allocations`: allocations the engine records, staff decisions on held ones
- `master_orders`: the master's orders and positions as the engine records them
- `intents`: child intents committed, withdrawn, claimed for sending
- `outcomes`: what brokers answered (written after the calls) and pushed updates (postbacks)
- `entitlements`: entitlement rows the convergence stage follows
- `corrections`: corrective orders (reconciliation)
- `flatten`: flattening a child
- `accounts`: the engine's state on accounts (needs-login, failures, breaker), lease-checked
- `snapshots`: margin snapshots, and forgetting a former master's stored positions
- `ticks`: tick runs

Names load lazily (PEP 562 `__getattr__`): a module low in the engine (controls, the lease) can
import `replication.services.audit_log` without loading every service and the engine modules they
call. `from replication.services import X` works for every name in `__all__`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS: dict[str, str] = {
    "allocation_owed_create": "replication.services.allocations",
    "allocation_resize": "replication.services.allocations",
    "entitlements_unsettle_instrument": "replication.services.entitlements",
    "exits_owed_record": "replication.services.intents",
    "intent_rewrite": "replication.services.intents",
    "allocation_create": "replication.services.allocations",
    "entitlements_unsettle": "replication.services.entitlements",
    "intents_claim": "replication.services.intents",
    "intents_commit": "replication.services.intents",
    "intents_withdraw": "replication.services.intents",
    "mapping_apply_broker_update": "replication.services.outcomes",
    "master_orders_record": "replication.services.master_orders",
    "master_positions_store": "replication.services.master_orders",
    "outcomes_audit": "replication.services.outcomes",
    "outcomes_hold": "replication.services.outcomes",
    "outcomes_modified": "replication.services.outcomes",
    "outcomes_record": "replication.services.outcomes",
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
        allocation_create,
        allocation_owed_create,
        allocation_reject,
        allocation_resize,
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
    from replication.services.entitlements import entitlements_unsettle, entitlements_unsettle_instrument
    from replication.services.flatten import FlattenLeg, FlattenPlan, child_flatten, flatten_plan
    from replication.services.intents import (
        exits_owed_record,
        intent_rewrite,
        intents_claim,
        intents_commit,
        intents_withdraw,
    )
    from replication.services.master_orders import master_orders_record, master_positions_store
    from replication.services.outcomes import (
        mapping_apply_broker_update,
        outcomes_audit,
        outcomes_hold,
        outcomes_modified,
        outcomes_record,
    )
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
    "allocation_create",
    "allocation_owed_create",
    "allocation_reject",
    "allocation_resize",
    "audit",
    "audit_row",
    "audit_rows",
    "changes",
    "child_flatten",
    "correction_plan",
    "entitlements_unsettle",
    "entitlements_unsettle_instrument",
    "event_kind",
    "exits_owed_record",
    "flatten_plan",
    "intent_rewrite",
    "intents_claim",
    "intents_commit",
    "intents_withdraw",
    "mapping_apply_broker_update",
    "master_orders_record",
    "master_positions_forget",
    "master_positions_store",
    "outcomes_audit",
    "outcomes_hold",
    "outcomes_modified",
    "outcomes_record",
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
