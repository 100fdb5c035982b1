"""Moved to `replication.allocation` (a package, one module per concern); these re-exports keep
old imports working while callers move. New code imports from `replication.allocation`."""

from replication.allocation import (
    CHILD_ROW_FIELDS,
    CORRECTIVE,
    PENDING,
    ChildRow,
    IntentRow,
    child_rows,
    create_intents,
    eligible_child_rows,
    eligible_children,
    entitlements_unsettle,
    exit_price,
    exit_slices,
    intent_row,
    make_tag,
    refresh_child_margins,
    replicated_positions,
)

__all__ = [
    "CHILD_ROW_FIELDS",
    "CORRECTIVE",
    "PENDING",
    "ChildRow",
    "IntentRow",
    "child_rows",
    "create_intents",
    "eligible_child_rows",
    "eligible_children",
    "entitlements_unsettle",
    "exit_price",
    "exit_slices",
    "intent_row",
    "make_tag",
    "refresh_child_margins",
    "replicated_positions",
]
