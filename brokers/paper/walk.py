"""The paper exchange's bounded random walk of prices (for the demo), matching after each step."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.utils import timezone

from brokers.errors import InputRejected
from brokers.paper.matching import decimal_input, match_instruments
from brokers.paper.models import IST, InstrumentType, PaperInstrument, PaperOrder
from brokers.paper.pricing import option_delta, round_to_tick

WALK_VOLATILITY = Decimal("0.15")


@dataclass(frozen=True, slots=True)
class WalkResult:
    steps: int
    prices_moved: int
    orders: list[PaperOrder]


def _random_ratio(rng: random.Random, max_step_pct: Decimal) -> Decimal:
    """1 ± a uniform step of at most `max_step_pct` percent (drawn in basis points of the bound)."""
    return 1 + Decimal(rng.randint(-10_000, 10_000)) / 10_000 * max_step_pct / 100


def _walk_step(
    instruments: list[PaperInstrument], rng: random.Random, max_step_pct: Decimal, today: date
) -> list[PaperInstrument]:
    """New prices for one step: spots walk, futures follow their spot, options move by delta."""
    spot_moves: dict[str, tuple[Decimal, Decimal]] = {}  # underlying -> (old, new)
    moved: list[PaperInstrument] = []

    def move(instrument: PaperInstrument, price: Decimal) -> None:
        tick = instrument.tick_size if instrument.tick_size > 0 else Decimal("0.05")
        new = max(round_to_tick(price, tick), tick)
        if new != instrument.last_price:
            instrument.last_price = new
            moved.append(instrument)

    for instrument in instruments:
        if instrument.instrument_type in (InstrumentType.INDEX, InstrumentType.EQ):
            old = instrument.last_price
            move(instrument, old * _random_ratio(rng, max_step_pct))
            spot_moves.setdefault(instrument.underlying, (old, instrument.last_price))
    for instrument in instruments:
        spot = spot_moves.get(instrument.underlying)
        if instrument.instrument_type == InstrumentType.FUT:
            ratio = spot[1] / spot[0] if spot else _random_ratio(rng, max_step_pct)
            move(instrument, instrument.last_price * ratio)
        elif instrument.is_option:
            if spot is None or instrument.expiry is None:
                move(instrument, instrument.last_price * _random_ratio(rng, max_step_pct))
                continue
            delta = option_delta(
                spot=spot[0],
                strike=instrument.strike,
                kind=instrument.instrument_type,
                days=(instrument.expiry - today).days,
                volatility=WALK_VOLATILITY,
            )
            move(instrument, instrument.last_price + delta * (spot[1] - spot[0]))
    return moved


def paper_random_walk(
    *, seed: int | None = None, max_step_pct: Decimal = Decimal("0.5"), steps: int = 1
) -> WalkResult:
    """Move every priced instrument `steps` times (each move at most `max_step_pct` % for spots and
    futures; options follow their underlying by delta), matching resting orders after each step."""
    bound = decimal_input(max_step_pct, "max step")
    if not 0 < bound < 100:
        raise InputRejected(f"max step must be between 0 and 100 percent, got {bound}")
    if steps < 1:
        raise InputRejected(f"steps must be at least 1, got {steps}")
    rng = random.Random(seed)
    today = timezone.localdate(timezone.now(), IST)
    instruments = list(PaperInstrument.objects.filter(last_price__gt=0).order_by("pk"))
    moved_ids: set[int] = set()
    orders: list[PaperOrder] = []
    for _ in range(steps):
        moved = _walk_step(instruments, rng, bound, today)
        if not moved:
            continue
        now = timezone.now()
        for instrument in moved:
            instrument.updated_at = now
        PaperInstrument.objects.bulk_update(moved, ["last_price", "updated_at"], batch_size=500)
        moved_ids.update(i.pk for i in moved)
        orders += match_instruments(instrument_ids={i.pk for i in moved})
    return WalkResult(steps=steps, prices_moved=len(moved_ids), orders=orders)
