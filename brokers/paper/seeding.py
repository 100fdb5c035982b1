"""Instrument seeding: the Kite fixture dumps plus a generated NIFTY and BANKNIFTY set.

Sources, applied in this order (a later row with the same exchange and symbol wins):
1. `<shared>/kite/fixtures/instruments_all.csv`, `instruments_nse.csv` and
   `handmade/instruments_sample.csv` (`<shared>` is `settings.SHARED_DIR`, else `BASE_DIR.parent /
   "shared"`); missing files are skipped;
2. generated rows for NIFTY (lot 75, freeze 1800, strikes every 50) and BANKNIFTY (lot 35, freeze
   900, strikes every 100): the index (NSE INDICES "NIFTY 50", "NIFTY BANK"), the current monthly
   future, and 21 strikes of calls and puts around the spot (NIFTY on the nearest weekly expiry,
   BANKNIFTY on the monthly one; NSE stopped BANKNIFTY weeklies in November 2024).

Fixture contracts that expired before the seeding date are skipped (counted in the result): the
exchange refuses orders in them, and Kite's dump no longer lists them.

Index derivatives expire on Tuesdays (NSE, from September 2025): weekly on every Tuesday, monthly on
the last Tuesday of the month (holidays are ignored). Re-running updates rows in place and keeps
the prices of rows that already exist, so a re-seed never undoes `paper price` or the walk; new
rows are priced from the current spot (or the default spot when there is none).
"""

from __future__ import annotations

import calendar
import csv
import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from brokers.paper.models import IST, InstrumentType, PaperInstrument, PaperOrder, PaperPosition, PaperTrade
from brokers.paper.pricing import option_premium, round_to_tick

logger = logging.getLogger(__name__)

FIXTURE_FILES = (
    "kite/fixtures/instruments_all.csv",
    "kite/fixtures/instruments_nse.csv",
    "kite/fixtures/handmade/instruments_sample.csv",
)
EXPIRY_WEEKDAY = calendar.TUESDAY
STRIKES_EACH_SIDE = 10
CARRY_RATE = Decimal("0.065")  # futures trade at spot plus about 6.5% a year of carry
INDEX_NAMES = {"NIFTY 50": "NIFTY", "NIFTY BANK": "BANKNIFTY"}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKLY_MONTH_CODES = "123456789OND"
DERIVATIVE_SYMBOL = re.compile(r"^(?P<underlying>[A-Z0-9&-]+?)\d{2}(?:[A-Z]{3}|[1-9OND]\d{2})")
NFO_SEGMENT_ID = 2
TICK = Decimal("0.05")


@dataclass(frozen=True, slots=True)
class UnderlyingSpec:
    name: str
    index_symbol: str
    index_token: int
    default_spot: Decimal
    lot_size: int
    freeze_quantity: int
    strike_step: Decimal
    weekly_options: bool
    volatility: Decimal
    token_base: int


UNDERLYINGS = (
    UnderlyingSpec(
        "NIFTY", "NIFTY 50", 256265, Decimal("24000"), 75, 1800, Decimal("50"), True, Decimal("0.13"), 100_000
    ),
    UnderlyingSpec(
        "BANKNIFTY",
        "NIFTY BANK",
        260105,
        Decimal("52000"),
        35,
        900,
        Decimal("100"),
        False,
        Decimal("0.15"),
        130_000,
    ),
)
FREEZE_QUANTITIES = {spec.name: spec.freeze_quantity for spec in UNDERLYINGS}


@dataclass(frozen=True, slots=True)
class SeedResult:
    created: int
    updated: int
    files_loaded: tuple[str, ...]
    files_missing: tuple[str, ...]
    expired_skipped: int = 0  # fixture contracts that expired before the seeding date, not loaded


# --- Expiries and symbols ---------------------------------------------------------------------


def monthly_expiry(year: int, month: int) -> date:
    """The last Tuesday of the month."""
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - EXPIRY_WEEKDAY) % 7)


def current_monthly_expiry(today: date) -> date:
    expiry = monthly_expiry(today.year, today.month)
    if today <= expiry:
        return expiry
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return monthly_expiry(year, month)


def weekly_expiry(today: date) -> date:
    """The next Tuesday on or after `today`."""
    return today + timedelta(days=(EXPIRY_WEEKDAY - today.weekday()) % 7)


def future_symbol(underlying: str, expiry: date) -> str:
    return f"{underlying}{expiry:%y}{MONTHS[expiry.month - 1]}FUT"


def option_symbol(underlying: str, expiry: date, strike: Decimal, kind: str) -> str:
    """Monthly `NIFTY25DEC24000CE` on the month's last expiry, weekly `NIFTY25D1624000CE` otherwise."""
    strike_text = f"{strike.normalize():f}"
    if expiry == monthly_expiry(expiry.year, expiry.month):
        return f"{underlying}{expiry:%y}{MONTHS[expiry.month - 1]}{strike_text}{kind}"
    return f"{underlying}{expiry:%y}{WEEKLY_MONTH_CODES[expiry.month - 1]}{expiry:%d}{strike_text}{kind}"


# --- Rows -------------------------------------------------------------------------------------


def shared_dir() -> Path:
    return Path(settings.SHARED_DIR)


def _underlying_of(row: dict[str, str], instrument_type: str) -> str:
    symbol, name = row["tradingsymbol"], row["name"].strip()
    if instrument_type == InstrumentType.INDEX:
        return INDEX_NAMES.get(symbol, symbol)
    if instrument_type == InstrumentType.EQ:
        return symbol
    if name:
        return name
    match = DERIVATIVE_SYMBOL.match(symbol)
    return match.group("underlying") if match else symbol


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    instrument_type = InstrumentType.INDEX if row["segment"] == "INDICES" else row["instrument_type"]
    underlying = _underlying_of(row, instrument_type)
    derivative = instrument_type in (InstrumentType.FUT, InstrumentType.CE, InstrumentType.PE)
    return {
        "exchange": row["exchange"],
        "tradingsymbol": row["tradingsymbol"],
        "instrument_token": int(row["instrument_token"]),
        "exchange_token": row["exchange_token"],
        "name": row["name"],
        "underlying": underlying,
        "instrument_type": instrument_type,
        "segment": row["segment"],
        "lot_size": int(row["lot_size"]),
        "tick_size": Decimal(row["tick_size"] or "0"),
        "expiry": date.fromisoformat(row["expiry"]) if row["expiry"] else None,
        "strike": Decimal(row["strike"] or "0"),
        "last_price": Decimal(row["last_price"] or "0"),
        "freeze_quantity": FREEZE_QUANTITIES.get(underlying)
        if derivative and row["exchange"] == "NFO"
        else None,
    }


def _nfo_token(spec: UnderlyingSpec, expiry: date, index: int) -> tuple[int, str]:
    exchange_token = spec.token_base + (expiry.toordinal() % 500) * 50 + index
    return exchange_token * 256 + NFO_SEGMENT_ID, str(exchange_token)


def generated_rows(spec: UnderlyingSpec, *, today: date, spot: Decimal) -> list[dict[str, Any]]:
    """Index, current monthly future and the option ladder of one underlying."""
    rows: list[dict[str, Any]] = [
        {
            "exchange": "NSE",
            "tradingsymbol": spec.index_symbol,
            "instrument_token": spec.index_token,
            "exchange_token": str(spec.index_token // 256),
            "name": spec.index_symbol,
            "underlying": spec.name,
            "instrument_type": InstrumentType.INDEX,
            "segment": "INDICES",
            "lot_size": 0,
            "tick_size": TICK,
            "expiry": None,
            "strike": Decimal("0"),
            "last_price": spot,
            "freeze_quantity": None,
        }
    ]
    derivative = {
        "exchange": "NFO",
        "name": spec.name,
        "underlying": spec.name,
        "lot_size": spec.lot_size,
        "tick_size": TICK,
        "freeze_quantity": spec.freeze_quantity,
    }
    future_expiry = current_monthly_expiry(today)
    token, exchange_token = _nfo_token(spec, future_expiry, 0)
    carry = 1 + CARRY_RATE * Decimal((future_expiry - today).days) / 365
    rows.append(
        {
            **derivative,
            "tradingsymbol": future_symbol(spec.name, future_expiry),
            "instrument_token": token,
            "exchange_token": exchange_token,
            "instrument_type": InstrumentType.FUT,
            "segment": "NFO-FUT",
            "expiry": future_expiry,
            "strike": Decimal("0"),
            "last_price": round_to_tick(spot * carry, TICK),
        }
    )
    option_expiry = weekly_expiry(today) if spec.weekly_options else future_expiry
    days = (option_expiry - today).days
    atm = (spot / spec.strike_step).quantize(Decimal("1")) * spec.strike_step
    index = 1
    for offset in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1):
        strike = atm + offset * spec.strike_step
        for kind in (InstrumentType.CE, InstrumentType.PE):
            token, exchange_token = _nfo_token(spec, option_expiry, index)
            index += 1
            rows.append(
                {
                    **derivative,
                    "tradingsymbol": option_symbol(spec.name, option_expiry, strike, kind),
                    "instrument_token": token,
                    "exchange_token": exchange_token,
                    "instrument_type": kind,
                    "segment": "NFO-OPT",
                    "expiry": option_expiry,
                    "strike": strike,
                    "last_price": option_premium(
                        spot=spot, strike=strike, kind=kind, days=days, volatility=spec.volatility, tick=TICK
                    ),
                }
            )
    return rows


# --- Seeding ----------------------------------------------------------------------------------

STATIC_FIELDS = (
    "instrument_token",
    "exchange_token",
    "name",
    "underlying",
    "instrument_type",
    "segment",
    "lot_size",
    "tick_size",
    "expiry",
    "strike",
    "freeze_quantity",
)


def paper_instruments_seed(*, today: date | None = None, reset: bool = False) -> SeedResult:
    """Load the fixture dumps and generate NIFTY / BANKNIFTY instruments (idempotent).

    `reset=True` first deletes every paper order, trade, position and instrument (accounts and
    their cash stay), so the exchange starts afresh.
    """
    today = today or timezone.localdate(timezone=IST)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    loaded: list[str] = []
    missing: list[str] = []
    expired = 0
    base = shared_dir()
    for relative in FIXTURE_FILES:
        path = base / relative
        if not path.is_file():
            missing.append(str(path))
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            for raw in csv.DictReader(handle):
                row = _csv_row(raw)
                if row["expiry"] is not None and row["expiry"] < today:
                    expired += 1  # no longer trades: the exchange would refuse every order in it
                    continue
                rows[(row["exchange"], row["tradingsymbol"])] = row
        loaded.append(str(path))
    if missing:
        logger.info("paper seed: %d fixture file(s) not found, skipped: %s", len(missing), ", ".join(missing))

    with transaction.atomic():
        if reset:
            PaperTrade.objects.all().delete()
            PaperOrder.objects.all().delete()
            PaperPosition.objects.all().delete()
            PaperInstrument.objects.all().delete()
        for spec in UNDERLYINGS:
            current = (
                PaperInstrument.objects.filter(
                    exchange="NSE", tradingsymbol=spec.index_symbol, last_price__gt=0
                )
                .values_list("last_price", flat=True)
                .first()
            )
            for row in generated_rows(spec, today=today, spot=current or spec.default_spot):
                rows[(row["exchange"], row["tradingsymbol"])] = row

        existing = {(i.exchange, i.tradingsymbol): i for i in PaperInstrument.objects.all()}
        now = timezone.now()
        to_create: list[PaperInstrument] = []
        to_update: list[PaperInstrument] = []
        for key, row in rows.items():
            instrument = existing.get(key)
            if instrument is None:
                to_create.append(PaperInstrument(**row, updated_at=now))
                continue
            for field in STATIC_FIELDS:
                setattr(instrument, field, row[field])
            if instrument.last_price <= 0 < row["last_price"]:
                instrument.last_price = row["last_price"]
            instrument.updated_at = now
            to_update.append(instrument)
        PaperInstrument.objects.bulk_create(to_create, batch_size=500)
        PaperInstrument.objects.bulk_update(
            to_update, [*STATIC_FIELDS, "last_price", "updated_at"], batch_size=500
        )
    return SeedResult(
        created=len(to_create),
        updated=len(to_update),
        files_loaded=tuple(loaded),
        files_missing=tuple(missing),
        expired_skipped=expired,
    )
