"""What sizing takes and returns: frozen dataclasses in, immutable records out.

The per-child results are NamedTuples because sizing runs for every child of every event and a
frozen dataclass costs five times as much to build (see `bench_fanout`). Every zero or reduced
result carries a reason code and a sentence a desk would understand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from replication.sizing.money import ONE, ZERO, rupees


class Reason(enum.StrEnum):
    OK = "ok"
    NO_CAPITAL = "no_capital"
    NO_AVAILABLE_MARGIN = "no_available_margin"
    CAPPED_BY_AVAILABLE = "capped_by_available"
    BELOW_ONE_UNIT = "below_one_unit"
    INSTRUMENT_NOT_ALLOWED = "instrument_not_allowed"
    INSTRUMENT_BLOCKED = "instrument_blocked"
    PRODUCT_NOT_ALLOWED = "product_not_allowed"
    MAX_LOTS = "max_lots_per_order"
    MAX_QUANTITY = "max_quantity"
    MAX_ORDER_VALUE = "max_order_value"
    MAX_OPEN_POSITIONS = "max_open_positions"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    NOTHING_HELD = "nothing_held"
    BAD_INPUT = "bad_input"


class CapitalMode(enum.StrEnum):
    """What a child's capital C_c is (§3.1); declared once: `accounts.models` takes its choices."""

    TOTAL = "total"
    AVAILABLE = "available"
    FIXED = "fixed"

    @property
    def label(self) -> str:
        """The human name (admin, forms, the dashboard)."""
        return _CAPITAL_MODE_LABELS[self]

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(value, label) pairs for a Django field's `choices=`."""
        return [(mode.value, mode.label) for mode in cls]


_CAPITAL_MODE_LABELS = {
    CapitalMode.TOTAL: "Total (used + available)",
    CapitalMode.AVAILABLE: "Available margin",
    CapitalMode.FIXED: "Fixed allocation",
}


class MarginSource(enum.StrEnum):
    DELTA_U = "delta_u"
    CALCULATOR = "calculator"


# --- Opening events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One instrument of an opening group, as the master traded it."""

    exchange: str
    tradingsymbol: str
    product: str
    side: str  # "BUY" | "SELL"
    master_lots: int
    lot_size: int
    price: Decimal  # reference price for order value (the order's price, or LTP for MARKET)
    order_margin: Decimal = ZERO  # the broker calculator's margin for the master's order
    freeze_quantity: int | None = None
    underlying: str = ""  # NIFTY for every NIFTY future and option: what a filter may name

    @property
    def instrument(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


@dataclass(frozen=True, slots=True)
class Attribution:
    """How much master margin the group used, where the figure came from, and why."""

    group_margin: Decimal
    source: MarginSource
    reason: str
    leg_margins: tuple[Decimal, ...]


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """Group-level figures shared by every child: the fraction and one unit's shape and margin."""

    legs: tuple[Leg, ...]
    attribution: Attribution
    master_capital: Decimal
    fraction: Decimal
    unit_lots: tuple[int, ...]  # lots of each leg in one unit (smallest integer ratio)
    master_units: int
    margin_per_unit: Decimal


@dataclass(frozen=True, slots=True)
class LegPlan:
    """One leg of an opening group as its `Allocation` row stores it: the typed plan.

    `attributed_margin` is this leg's share of the group's margin in paise (the legs' shares sum
    exactly to the group's margin in paise); `fraction` is for display (12 places, truncated):
    sizing rebuilds the unrounded fraction from the margin and the capital (`group_plan`).
    """

    leg: Leg
    master_capital: Decimal
    attributed_margin: Decimal
    source: MarginSource
    reason: str
    fraction: Decimal
    unit_lots: int

    @property
    def margin_per_lot(self) -> Decimal | None:
        """The master's margin for one lot of this leg; None without a margin figure."""
        if self.attributed_margin <= 0 or self.leg.master_lots <= 0:
            return None
        return self.attributed_margin / self.leg.master_lots


@dataclass(frozen=True, slots=True)
class ChildLimits:
    # Filter entries (`caps.filter_match`): "EXCHANGE:SYMBOL" (one contract), "EXCHANGE:UNDERLYING"
    # or "UNDERLYING" (every contract on it); an empty allow list allows all.
    allowed_instruments: frozenset[str] = frozenset()
    blocked_instruments: frozenset[str] = frozenset()
    allowed_products: frozenset[str] = frozenset()  # empty = all
    max_lots_per_order: int | None = None
    max_quantity: int | None = None
    max_order_value: Decimal | None = None
    max_open_positions: int | None = None
    daily_loss_limit: Decimal | None = None  # a positive rupee amount

    @property
    def any(self) -> bool:
        return self != NO_LIMITS_VALUE


NO_LIMITS = ChildLimits()
NO_LIMITS_VALUE = ChildLimits()


@dataclass(frozen=True, slots=True)
class ChildProfile:
    """What sizing needs to know about one child."""

    child_id: int
    capital_mode: CapitalMode = CapitalMode.TOTAL
    used: Decimal | None = None  # latest snapshot; None = no reading
    available: Decimal | None = None
    fixed_capital: Decimal | None = None
    multiplier: Decimal = ONE
    limits: ChildLimits = NO_LIMITS
    open_instruments: frozenset[str] = frozenset()  # instruments the child holds now
    day_pnl: Decimal = ZERO
    margin_per_unit: Decimal | None = None  # from the child's basket-margin preflight, if on

    def capital(self) -> Decimal | None:
        """C_c per the capital mode: TOTAL U + A, AVAILABLE A, FIXED the staff's amount."""
        if self.capital_mode == CapitalMode.FIXED:
            return self.fixed_capital
        if self.used is None or self.available is None:
            return None
        if self.capital_mode == CapitalMode.AVAILABLE:
            return self.available
        return self.used + self.available


class LegOrder(NamedTuple):
    leg_index: int
    side: str
    lots: int
    quantity: int
    slices: tuple[int, ...]  # quantities, each within the freeze quantity, summing to quantity


class ChildEntry(NamedTuple):
    """One child's share of an opening group."""

    child_id: int
    units: int
    orders: tuple[LegOrder, ...]
    capital: Decimal | None
    target_margin: Decimal
    reason: Reason
    note: str = ""
    caps_hit: tuple[Reason, ...] = ()
    needs: Decimal | None = None  # margin for one unit, when the share was below it
    unit_label: str = "one lot"

    @property
    def message(self) -> str:
        """Why the result is zero or reduced, in words (formatted only when asked for)."""
        if self.reason == Reason.BELOW_ONE_UNIT and self.needs is not None:
            return f"needs {rupees(self.needs)} for {self.unit_label}, share is {rupees(self.target_margin)}"
        return self.note

    @property
    def total_lots(self) -> int:
        return sum(o.lots for o in self.orders)


# --- Closing events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExitPlan:
    exit_ratio: Decimal
    master_flat: bool


class ChildExit(NamedTuple):
    child_id: int
    held_lots: int
    lots: int
    quantity: int
    slices: tuple[int, ...]
    reason: Reason
    message: str = ""
