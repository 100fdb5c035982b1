"""The paper exchange's margin model: simplified, documented, pure (standard library and Decimal only).

Margin model
------------
The paper exchange blocks margin per account with these rules (rates are defaults; each can be
overridden in Django settings, read by the service layer):

* **Futures**: a percentage of notional, `|quantity| x price x PAPER_FUTURES_MARGIN_RATE`
  (default 10%), for long and short positions alike.
* **Short options**: a percentage of the underlying's notional,
  `|quantity| x underlying last price x PAPER_SHORT_OPTION_MARGIN_RATE` (default 10%); when the
  underlying has no price, the strike stands in for it.
* **Long options**: the premium, `quantity x price`.
* **Cash equity**: `CNC` (delivery) and `MTF` (margin trading: nothing is lent here) 100% of value
  (`PAPER_CNC_MARGIN_RATE`), `MIS` (intraday) 20% (`PAPER_MIS_MARGIN_RATE`), whichever side.
* **Hedge offset**: per underlying, the short quantity (short futures and short options) that is
  covered by long options (calls or puts) on the same underlying gets a benefit of
  `PAPER_HEDGE_OFFSET_RATE` (default 70%) of that covered quantity's short margin, i.e.
  `benefit = rate x short margin x min(short qty, long option qty) / short qty`.
* **Open orders** block margin as if they were filled: at their limit price (LIMIT, SL), their
  trigger price (SL-M), or the last price. They are netted with the positions of the same
  instrument and product, and the hedge offset sees them too: the quantity of an instrument is
  the position plus every open order (buys positive, sells negative), valued at the
  quantity-weighted price of the legs on the side that remains.
* **Funds**: `used` = the margin blocked as above; `capital` = cash + realised P&L + unrealised
  P&L (marked to the last price); `available = capital - used`. An order whose extra margin
  (`used` after it minus `used` before it) exceeds `available` is rejected with Kite's message
  "Insufficient funds. Required margin is X but available margin is Y."; an order that lowers
  `used` is never rejected.
* **Calculators**: order margins price each order on its own; the basket margin is the extra
  margin a basket adds to the account's positions and open orders, hedges included (never below 0).

Example (DESIGN §3.6 step 4): NIFTY future at 20,000, its 20000 call at 200, lot 75. Selling 2 lots
of the future blocks 3,00,000; buying 2 lots of the call adds 30,000 of premium and a hedge benefit
of 0.7 x 3,00,000 = 2,10,000, so used margin is 1,20,000 (60,000 per future-and-call unit).

Amounts are rounded to paise (two decimals, half up) once, at the end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

FUTURES_MARGIN_RATE = Decimal("0.10")
SHORT_OPTION_MARGIN_RATE = Decimal("0.10")
CNC_MARGIN_RATE = Decimal("1.00")
MIS_MARGIN_RATE = Decimal("0.20")
HEDGE_OFFSET_RATE = Decimal("0.70")
# Equity products that block their full value at the CNC rate: MTF too, as the paper exchange lends
# nothing (at Kite the broker funds part of an MTF position).
FULL_VALUE_PRODUCTS = frozenset({"CNC", "MTF"})

FUT = "FUT"
CALL = "CE"
PUT = "PE"
EQUITY = "EQ"
OPTION_KINDS = frozenset({CALL, PUT})
DERIVATIVE_KINDS = frozenset({FUT, CALL, PUT})

PAISE = Decimal("0.01")
ZERO = Decimal("0")


def money(value: Decimal) -> Decimal:
    """Round an amount to paise, half up (the one rounding rule for margin and P&L)."""
    return value.quantize(PAISE, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class MarginRates:
    futures: Decimal = FUTURES_MARGIN_RATE
    short_option: Decimal = SHORT_OPTION_MARGIN_RATE
    cnc: Decimal = CNC_MARGIN_RATE
    mis: Decimal = MIS_MARGIN_RATE
    hedge_offset: Decimal = HEDGE_OFFSET_RATE


DEFAULT_RATES = MarginRates()


@dataclass(frozen=True, slots=True)
class Leg:
    """A signed quantity of one instrument: a position, or an open order as if filled.

    `key` identifies the instrument (e.g. "NFO:NIFTY25DECFUT"); legs with the same key and product
    are netted. `kind` is FUT, CE, PE or EQ. `underlying_price` is the underlying's last price
    (zero when unknown; short options then use the strike).
    """

    key: str
    kind: str
    underlying: str
    quantity: int
    price: Decimal
    product: str = "NRML"
    underlying_price: Decimal = ZERO
    strike: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class MarginBreakdown:
    """Blocked margin and where it comes from. `total` = the parts - `hedge_benefit`."""

    total: Decimal = ZERO
    futures: Decimal = ZERO
    short_options: Decimal = ZERO
    option_premium: Decimal = ZERO
    equity: Decimal = ZERO
    hedge_benefit: Decimal = ZERO

    @property
    def span(self) -> Decimal:
        """Futures and short-option margin after the hedge offset (Kite's `span`)."""
        return self.futures + self.short_options - self.hedge_benefit


def net_legs(legs: Iterable[Leg]) -> list[Leg]:
    """Net legs of the same instrument and product into one leg; flat instruments disappear.

    The netted leg is valued at the quantity-weighted price of the legs on the side that remains.
    """
    if isinstance(legs, list | tuple) and len(legs) == 1:  # an account's first order: nothing to net
        return [leg for leg in legs if leg.quantity]
    groups: dict[tuple[str, str], list[Leg]] = defaultdict(list)
    for leg in legs:
        if leg.quantity:
            groups[(leg.key, leg.product)].append(leg)
    netted: list[Leg] = []
    for group in groups.values():
        quantity = sum(leg.quantity for leg in group)
        if quantity == 0:
            continue
        same_side = [leg for leg in group if (leg.quantity > 0) == (quantity > 0)]
        units = sum(abs(leg.quantity) for leg in same_side)
        price = sum((abs(leg.quantity) * leg.price for leg in same_side), ZERO) / units
        netted.append(replace(group[-1], quantity=quantity, price=price))
    return netted


def short_margin(leg: Leg, rates: MarginRates = DEFAULT_RATES) -> Decimal:
    """Margin of a short derivative leg (futures on notional, options on underlying notional)."""
    if leg.kind == FUT:
        return abs(leg.quantity) * leg.price * rates.futures
    basis = leg.underlying_price if leg.underlying_price > 0 else leg.strike
    return abs(leg.quantity) * basis * rates.short_option


def portfolio_margin(legs: Sequence[Leg], rates: MarginRates = DEFAULT_RATES) -> MarginBreakdown:
    """Margin blocked by a set of legs (positions and open orders), with the hedge offset."""
    futures = short_options = premium = equity = benefit = ZERO
    shorts: dict[str, list[tuple[int, Decimal]]] = defaultdict(list)  # underlying -> (qty, margin)
    long_options: dict[str, int] = defaultdict(int)
    for leg in net_legs(legs):
        if leg.kind == EQUITY:
            rate = rates.cnc if leg.product in FULL_VALUE_PRODUCTS else rates.mis
            equity += abs(leg.quantity) * leg.price * rate
        elif leg.kind in OPTION_KINDS and leg.quantity > 0:
            premium += leg.quantity * leg.price
            long_options[leg.underlying] += leg.quantity
        elif leg.kind == FUT:
            margin = abs(leg.quantity) * leg.price * rates.futures
            futures += margin
            if leg.quantity < 0:
                shorts[leg.underlying].append((-leg.quantity, margin))
        elif leg.kind in OPTION_KINDS:
            margin = short_margin(leg, rates)
            short_options += margin
            shorts[leg.underlying].append((-leg.quantity, margin))
    for underlying, short_legs in shorts.items():
        short_quantity = sum(quantity for quantity, _ in short_legs)
        covered = min(short_quantity, long_options.get(underlying, 0))
        if covered:
            short_total = sum((margin for _, margin in short_legs), ZERO)
            benefit += rates.hedge_offset * short_total * covered / short_quantity
    futures, short_options, premium, equity, benefit = (
        money(part) for part in (futures, short_options, premium, equity, benefit)
    )
    return MarginBreakdown(
        total=futures + short_options + premium + equity - benefit,
        futures=futures,
        short_options=short_options,
        option_premium=premium,
        equity=equity,
        hedge_benefit=benefit,
    )


def incremental_margin(
    existing: Sequence[Leg], added: Sequence[Leg], rates: MarginRates = DEFAULT_RATES
) -> tuple[MarginBreakdown, MarginBreakdown]:
    """Margin before and after adding legs to an account's positions and open orders."""
    return portfolio_margin(existing, rates), portfolio_margin([*existing, *added], rates)
