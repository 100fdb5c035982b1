"""What the Angel One, Dhan and Alice Blue instrument masters share once a row is read: which
expiry is the month's last (a monthly contract, spelled `NIFTY24DEC24000CE`, not the weekly
`NIFTY24D1924000CE`), and the engine's Instrument for a row (segment, underlying, the 15:30 IST
expiry as aware UTC). Each adapter reads its own columns and keeps its own symbols and keys.

Standard library and brokers.types only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from brokers.types import Instrument, InstrumentType

IST = ZoneInfo("Asia/Kolkata")
DERIVATIVES = (InstrumentType.FUT, InstrumentType.CE, InstrumentType.PE)

Month = tuple[str, str, int, int]  # exchange, underlying name, year, month


class Dated(Protocol):
    @property
    def exchange(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def expiry(self) -> date | None: ...


def last_expiries(rows: Iterable[Dated]) -> dict[Month, date]:
    """The last expiry of each underlying's month on each exchange."""
    last: dict[Month, date] = {}
    for r in rows:
        if r.expiry is not None:
            month = (r.exchange, r.name, r.expiry.year, r.expiry.month)
            if month not in last or r.expiry > last[month]:
                last[month] = r.expiry
    return last


def is_monthly(row: Dated, last: Mapping[Month, date]) -> bool:
    """Whether the row's expiry is its month's last (a monthly contract)."""
    expiry = row.expiry
    return expiry is not None and last.get((row.exchange, row.name, expiry.year, expiry.month)) == expiry


def expiry_utc(day: date | None) -> datetime | None:
    """The contract's last trading moment (15:30 IST on its expiry day), aware UTC."""
    if day is None:
        return None
    return datetime.combine(day, time(15, 30), tzinfo=IST).astimezone(UTC)


def engine_instrument(
    *,
    exchange: str,
    tradingsymbol: str,
    token: str,
    name: str,
    instrument_type: InstrumentType,
    lot_size: int,
    tick_size: Decimal,
    expiry: date | None,
    strike: Decimal,
) -> Instrument:
    """The engine's Instrument for one master row (`token`: the broker's numeric id, else 0)."""
    derivative = instrument_type in DERIVATIVES
    segment = (
        f"{exchange}-{'FUT' if instrument_type is InstrumentType.FUT else 'OPT'}" if derivative else exchange
    )
    return Instrument(
        exchange=exchange,
        tradingsymbol=tradingsymbol,
        instrument_token=int(token) if token.isdigit() else 0,
        name=name,
        instrument_type=instrument_type,
        segment=segment,
        lot_size=lot_size,
        tick_size=tick_size,
        expiry=expiry_utc(expiry),
        strike=strike,
        underlying=name if derivative else "",
    )
