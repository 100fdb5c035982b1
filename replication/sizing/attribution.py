"""Step 1 of DESIGN §3.3: how much master margin an opening group used, and each leg's share."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal

from replication.sizing.money import CALCULATOR_TOLERANCE, PAISE, ZERO, money, rupees
from replication.sizing.records import Attribution, MarginSource


def attribute_margin(
    *, delta_u: Decimal, leg_margins: Sequence[Decimal], group_estimate: Decimal | None = None
) -> Attribution:
    """Step 1: the group's margin is ΔU, shared by the legs in proportion to their own margins.

    `leg_margins` are the calculator's figures for each order alone; `group_estimate` is the
    calculator's figure for the legs together (a basket, with the hedge benefit), when known.
    ΔU ≤ 0 (a hedge that released margin) or ΔU more than 50% away from the calculator's figure
    for the group: use the calculator's figure and say why.
    """
    estimates = tuple(max(m, ZERO) for m in leg_margins)
    alone = sum(estimates, ZERO)
    calculator = alone if group_estimate is None or group_estimate <= 0 else group_estimate

    def shares(total: Decimal) -> tuple[Decimal, ...]:
        if len(estimates) == 1 or alone <= 0:
            return _split_evenly(total, len(estimates))
        return tuple(total * m / alone for m in estimates)

    if delta_u <= 0:
        if calculator <= 0:
            return Attribution(
                ZERO, MarginSource.CALCULATOR, "no margin change and no calculator figure", estimates
            )
        return Attribution(
            calculator,
            MarginSource.CALCULATOR,
            f"used margin did not rise (ΔU {rupees(delta_u)}); using the calculator's {rupees(calculator)}",
            shares(calculator),
        )
    if calculator > 0 and abs(delta_u - calculator) > calculator * CALCULATOR_TOLERANCE:
        return Attribution(
            calculator,
            MarginSource.CALCULATOR,
            f"ΔU {rupees(delta_u)} is more than 50% away from the calculator's {rupees(calculator)} "
            "(settlement lag or M2M noise); using the calculator",
            shares(calculator),
        )
    return Attribution(delta_u, MarginSource.DELTA_U, "rise in used margin across the tick", shares(delta_u))


def paise_shares(shares: Sequence[Decimal]) -> list[Decimal]:
    """Leg margins in paise (as stored) that sum exactly to the group's margin in paise: each leg
    rounded down, the last one takes the rest, so no paisa is lost or made between the legs."""
    if not shares:
        return []
    out = [s.quantize(PAISE, rounding=ROUND_DOWN) for s in shares[:-1]]
    out.append(money(sum(shares, ZERO)) - sum(out, ZERO))
    return out


def _split_evenly(total: Decimal, n: int) -> tuple[Decimal, ...]:
    return tuple(total / n for _ in range(n)) if n else ()
