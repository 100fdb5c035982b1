"""Child intents for allocations: size every eligible child and commit tagged intents (no broker writes).

Entries use the pure sizing rules (`replication.sizing`) on the typed plan each allocation stores
(`Allocation.sizing_plan`); exits size each child's *replicated* position (what the engine's own
filled orders put there) and never touch anything else. Modules:

- `children`: eligible children, their sizing rows (`ChildRow`), fresh margin snapshots
- `positions`: the replicated position (`replicated_positions`, `PENDING`, `CORRECTIVE`)
- `intents`: the deterministic tag and the intent rows (`make_tag`, `IntentRow`, `intent_row`)
- `entries`: entries by the sizing rules; `exits`: what is in flight before exits (`in_flight`),
  exits by entitlement, exit slices and price
- `commit`: `create_intents` (one group, one transaction; rows written by `replication.services.intents`)
"""

from replication.allocation.children import (
    CHILD_ROW_FIELDS,
    ChildRow,
    child_rows,
    eligible_child_rows,
    eligible_children,
    refresh_child_margins,
)
from replication.allocation.commit import create_intents
from replication.allocation.exits import InFlight, exit_price, exit_slices, in_flight
from replication.allocation.intents import IntentRow, intent_row, make_tag, skip_row
from replication.allocation.positions import CORRECTIVE, PENDING, replicated_positions

__all__ = [
    "CHILD_ROW_FIELDS",
    "CORRECTIVE",
    "PENDING",
    "ChildRow",
    "InFlight",
    "IntentRow",
    "child_rows",
    "create_intents",
    "eligible_child_rows",
    "eligible_children",
    "exit_price",
    "exit_slices",
    "in_flight",
    "intent_row",
    "make_tag",
    "refresh_child_margins",
    "replicated_positions",
    "skip_row",
]
