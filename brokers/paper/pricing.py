"""Plausible option prices for seeding and the random walk (pure; Decimal; no market data needed).

A normal (Bachelier) model with a closed-form approximation: the one-standard-deviation move is
`sigma x spot x sqrt(days / 365)`; the time value is `sd x phi(d) / (1 + d^2)` with `d = |spot - strike| / sd`
(exact at the money, close in the tails). Delta uses the logistic approximation of the normal
distribution. Good enough for a demo, never for trading.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

SQRT_TWO_PI = Decimal("2.5066282746310002")
LOGISTIC_SCALE = Decimal("1.702")
DAYS_PER_YEAR = Decimal("365")
DEFAULT_TICK = Decimal("0.05")


def round_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """The nearest multiple of `tick` (half to even); a non-positive tick means 0.05."""
    step = tick if tick > 0 else DEFAULT_TICK
    return (price / step).quantize(Decimal("1"), rounding=ROUND_HALF_EVEN) * step


def _standard_deviation(spot: Decimal, days: int, volatility: Decimal) -> Decimal:
    years = Decimal(max(days, 1)) / DAYS_PER_YEAR
    return volatility * spot * years.sqrt()


def option_premium(
    *, spot: Decimal, strike: Decimal, kind: str, days: int, volatility: Decimal, tick: Decimal = DEFAULT_TICK
) -> Decimal:
    """Premium of a call ("CE") or put ("PE"): intrinsic value plus time value, at least one tick."""
    sd = _standard_deviation(spot, days, volatility)
    intrinsic = max(spot - strike, Decimal("0")) if kind == "CE" else max(strike - spot, Decimal("0"))
    d = abs(spot - strike) / sd
    density = (-(d * d) / 2).exp() / SQRT_TWO_PI
    time_value = sd * density / (1 + d * d)
    step = tick if tick > 0 else DEFAULT_TICK
    return max(round_to_tick(intrinsic + time_value, step), step)


def option_delta(*, spot: Decimal, strike: Decimal, kind: str, days: int, volatility: Decimal) -> Decimal:
    """Approximate delta: between 0 and 1 for calls, between -1 and 0 for puts."""
    sd = _standard_deviation(spot, days, volatility)
    x = (spot - strike) / sd
    call = 1 / (1 + (-LOGISTIC_SCALE * x).exp())
    return call if kind == "CE" else call - 1
