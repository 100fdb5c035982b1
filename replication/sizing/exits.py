"""DESIGN §3.4: sizing a closing event by the exit ratio."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from replication.sizing.money import ONE
from replication.sizing.records import ChildExit, ExitPlan, Reason
from replication.sizing.slicing import slice_quantity


def plan_exit(*, closing_quantity: int, master_position_before: int) -> ExitPlan:
    """r = closing quantity / master position before (absolute values, 0 < r ≤ 1)."""
    before = abs(master_position_before)
    closing = abs(closing_quantity)
    if before == 0 or closing == 0:
        raise ValueError("a closing event needs a position and a closing quantity")
    if closing >= before:
        return ExitPlan(ONE, True)
    return ExitPlan(Decimal(closing) / Decimal(before), False)


def exit_lots(plan: ExitPlan, held_lots: int) -> int:
    """round(r × held lots), halves up (toward less risk), never more than held."""
    lots = int((plan.exit_ratio * held_lots).to_integral_value(rounding=ROUND_HALF_UP))
    return min(lots, held_lots)


def size_exit(
    plan: ExitPlan, *, child_id: int, held_quantity: int, lot_size: int, freeze_quantity: int | None = None
) -> ChildExit:
    """Child exit lots = round(r × held lots), halves up, never more than held; master flat → all."""
    held = abs(held_quantity)
    if lot_size <= 0:
        raise ValueError("lot size must be positive")
    held_lots = held // lot_size
    if held == 0:
        return ChildExit(child_id, 0, 0, 0, (), Reason.NOTHING_HELD, "holds nothing the engine placed here")
    if plan.master_flat:
        # Everything the engine placed, including an odd remainder below one lot.
        return ChildExit(
            child_id, held_lots, held_lots, held, slice_quantity(held, lot_size, freeze_quantity), Reason.OK
        )
    lots = exit_lots(plan, held_lots)
    if lots <= 0:
        return ChildExit(
            child_id,
            held_lots,
            0,
            0,
            (),
            Reason.BELOW_ONE_UNIT,
            f"{plan.exit_ratio:.4f} of {held_lots} lots rounds to zero",
        )
    quantity = lots * lot_size
    return ChildExit(
        child_id, held_lots, lots, quantity, slice_quantity(quantity, lot_size, freeze_quantity), Reason.OK
    )
