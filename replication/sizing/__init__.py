"""Pure sizing rules (DESIGN §3.3 and §3.4). Standard library only; Decimal throughout.

Frozen dataclasses in; immutable records out. Nothing here reads the clock, the database or a
broker. One rule per module, read in this order:

- `money`: the one rounding helper (paise), display ratios, the ₹ formatter
- `records`: what sizing takes and returns (`Leg`, `GroupPlan`, `LegPlan`, `ChildProfile`, …)
- `attribution` (step 1), `fraction` (2), `target` (3), `units` (4, 6), `lots` (5), `caps` (7)
- `group`: the group's plan (`plan_group`), and the typed plan an `Allocation` stores (`leg_plans`,
  `group_plan`)
- `entry`: one child's share, readable (`size_entry`); `batch`: the same for many children, fast
  (`size_entries`, proven equal by a property test)
- `exits` (§3.4, the exit ratio), `slicing` (freeze quantity, per-order caps of exits)
"""

from replication.sizing.attribution import attribute_margin, paise_shares
from replication.sizing.batch import size_entries
from replication.sizing.caps import apply_caps
from replication.sizing.entry import size_entry
from replication.sizing.exits import exit_lots, plan_exit, size_exit
from replication.sizing.fraction import Quotient, exact_fraction, fraction
from replication.sizing.group import group_plan, leg_plans, plan_group
from replication.sizing.lots import leg_orders, whole_units
from replication.sizing.money import (
    CALCULATOR_TOLERANCE,
    EXACT_DIGITS,
    ONE,
    PAISE,
    RATIO_PLACES,
    ZERO,
    money,
    ratio,
    rupees,
)
from replication.sizing.records import (
    NO_LIMITS,
    Attribution,
    CapitalMode,
    ChildEntry,
    ChildExit,
    ChildLimits,
    ChildProfile,
    ExitPlan,
    GroupPlan,
    Leg,
    LegOrder,
    LegPlan,
    MarginSource,
    Reason,
)
from replication.sizing.slicing import exit_order_limit, exit_slices, slice_quantity
from replication.sizing.target import target_margin
from replication.sizing.units import unit_margin, unit_shape

__all__ = [
    "CALCULATOR_TOLERANCE",
    "EXACT_DIGITS",
    "NO_LIMITS",
    "ONE",
    "PAISE",
    "RATIO_PLACES",
    "ZERO",
    "Attribution",
    "CapitalMode",
    "ChildEntry",
    "ChildExit",
    "ChildLimits",
    "ChildProfile",
    "ExitPlan",
    "GroupPlan",
    "Leg",
    "LegOrder",
    "LegPlan",
    "MarginSource",
    "Quotient",
    "Reason",
    "apply_caps",
    "attribute_margin",
    "exact_fraction",
    "exit_lots",
    "exit_order_limit",
    "exit_slices",
    "fraction",
    "group_plan",
    "leg_orders",
    "leg_plans",
    "money",
    "paise_shares",
    "plan_exit",
    "plan_group",
    "ratio",
    "rupees",
    "size_entries",
    "size_entry",
    "size_exit",
    "slice_quantity",
    "target_margin",
    "unit_margin",
    "unit_shape",
    "whole_units",
]
