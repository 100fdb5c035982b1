"""Dhan's security-id master (the compact `api-scrip-master.csv`) mapped onto the engine's keys.

Dhan names an instrument by its security id and exchange segment; weekly and monthly contracts can
share a trading symbol, so instruments are keyed by (exchange segment, security id), never by
symbol alone. Each row also gets the NSE-style key the rest of the product uses (Kite's spelling:
`NIFTY24DECFUT`, `NIFTY24DEC24000CE` on the month's last expiry, `NIFTY24D1924000CE` on a weekly
one, `SBIN`), so a master order in that spelling finds the child's security id, and an instrument
Dhan does not list is not found (never guessed).

Columns read (docs: instrument list, compact tags): SEM_EXM_EXCH_ID (NSE, BSE, MCX), SEM_SEGMENT
(E equity, D derivatives, C currency, M commodity, I index), SEM_SMST_SECURITY_ID,
SEM_INSTRUMENT_NAME (EQUITY, INDEX, FUTIDX, FUTSTK, OPTIDX, OPTSTK, ...), SEM_TRADING_SYMBOL
(`NIFTY-Dec2024-FUT`, `NIFTY-Dec2024-24000-CE`, `SBIN`), SEM_LOT_UNITS, SEM_EXPIRY_DATE
(`2024-12-26 14:30:00`), SEM_STRIKE_PRICE (rupees), SEM_OPTION_TYPE (CE, PE, XX), SEM_TICK_SIZE
(paise in the published file), SEM_EXPIRY_FLAG (M monthly, W weekly), SM_SYMBOL_NAME.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from brokers.angel.scrip import neutral_symbol
from brokers.daily_cache import DailyCache, PerSource
from brokers.scrip_rows import DERIVATIVES, engine_instrument, is_monthly, last_expiries
from brokers.types import Instrument, InstrumentKey, InstrumentType

IST = ZoneInfo("Asia/Kolkata")
HUNDRED = Decimal("100")
SEGMENTS: dict[tuple[str, str], tuple[str, str]] = {
    # (SEM_EXM_EXCH_ID, SEM_SEGMENT) -> (Dhan exchange segment, the engine's exchange)
    ("NSE", "E"): ("NSE_EQ", "NSE"),
    ("NSE", "D"): ("NSE_FNO", "NFO"),
    ("NSE", "C"): ("NSE_CURRENCY", "CDS"),
    ("BSE", "E"): ("BSE_EQ", "BSE"),
    ("BSE", "D"): ("BSE_FNO", "BFO"),
    ("BSE", "C"): ("BSE_CURRENCY", "BCD"),
    ("MCX", "M"): ("MCX_COMM", "MCX"),
    ("NSE", "I"): ("IDX_I", "INDICES"),
    ("BSE", "I"): ("IDX_I", "INDICES"),
}
FUTURES = frozenset({"FUTIDX", "FUTSTK", "FUTCOM", "FUTCUR"})
OPTIONS = frozenset({"OPTIDX", "OPTSTK", "OPTFUT", "OPTCUR"})


class ScripError(ValueError):
    """A scrip master row that cannot be read."""


@dataclass(frozen=True, slots=True)
class Scrip:
    """One Dhan instrument: its security id and segment, and the engine's instrument."""

    security_id: str
    segment: str
    dhan_symbol: str
    instrument: Instrument

    @property
    def exchange(self) -> str:
        return self.instrument.exchange

    @property
    def key(self) -> InstrumentKey:
        return self.instrument.key


def _decimal(row: Mapping[str, Any], field: str) -> Decimal:
    text = str(row.get(field) or "").strip()
    try:
        number = Decimal(text or "0")
    except InvalidOperation:
        raise ScripError(f"{field} {text[:20]!r} is not a number") from None
    if not number.is_finite():
        raise ScripError(f"{field} is not finite")
    return number


def _expiry(text: str) -> date | None:
    text = text.strip()
    if not text or text.startswith("0001") or text == "-1":
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%d-%m-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ScripError(f"expiry {text!r} is not like 2024-12-26 14:30:00")


@dataclass(frozen=True, slots=True)
class _Row:
    security_id: str
    segment: str
    exchange: str
    symbol: str
    name: str
    instrument_type: InstrumentType
    expiry: date | None
    strike: Decimal
    lot_size: int
    tick_size: Decimal
    weekly: bool | None


def _read(row: Mapping[str, Any]) -> _Row | None:
    """One row, or None for what the engine cannot trade (spreads, unknown segments and kinds)."""
    security_id = str(row.get("SEM_SMST_SECURITY_ID") or "").strip()
    exch = str(row.get("SEM_EXM_EXCH_ID") or "").strip().upper()
    seg = str(row.get("SEM_SEGMENT") or "").strip().upper()
    kind = str(row.get("SEM_INSTRUMENT_NAME") or "").strip().upper()
    symbol = str(row.get("SEM_TRADING_SYMBOL") or "").strip().upper()
    if not security_id or not exch:
        raise ScripError("a row without security id or exchange")
    found = SEGMENTS.get((exch, seg))
    if found is None:
        return None
    segment, exchange = found
    if kind in FUTURES:
        instrument_type = InstrumentType.FUT
    elif kind in OPTIONS:
        option = str(row.get("SEM_OPTION_TYPE") or "").strip().upper()
        if option not in ("CE", "PE"):
            return None
        instrument_type = InstrumentType(option)
    elif kind == "INDEX":
        instrument_type = InstrumentType.INDEX
    elif kind == "EQUITY":
        instrument_type = InstrumentType.EQ
    else:
        return None
    name = (
        symbol.split("-", 1)[0]
        if instrument_type in (InstrumentType.FUT, InstrumentType.CE, InstrumentType.PE)
        else symbol
    )
    flag = str(row.get("SEM_EXPIRY_FLAG") or "").strip().upper()
    strike = _decimal(row, "SEM_STRIKE_PRICE")
    return _Row(
        security_id=security_id,
        segment=segment,
        exchange=exchange,
        symbol=symbol,
        name=name or str(row.get("SM_SYMBOL_NAME") or "").strip().upper(),
        instrument_type=instrument_type,
        expiry=_expiry(str(row.get("SEM_EXPIRY_DATE") or "")),
        strike=strike if strike > 0 else Decimal("0"),
        lot_size=max(1, int(_decimal(row, "SEM_LOT_UNITS"))),
        tick_size=_decimal(row, "SEM_TICK_SIZE") / HUNDRED,
        weekly={"W": True, "M": False}.get(flag),
    )


def scrips_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Scrip]:
    """The master's rows as Scrips (rows the engine cannot trade are left out)."""
    read = [r for r in (_read(row) for row in rows) if r is not None]
    last_expiry = last_expiries(read)
    scrips = []
    for r in read:
        if r.instrument_type in DERIVATIVES:
            monthly = not r.weekly if r.weekly is not None else is_monthly(r, last_expiry)
            tradingsymbol = neutral_symbol(
                name=r.name,
                instrument_type=r.instrument_type,
                expiry=r.expiry,
                strike=r.strike,
                monthly=monthly,
            )
        else:
            tradingsymbol = r.symbol
        instrument = engine_instrument(
            exchange=r.exchange,
            tradingsymbol=tradingsymbol,
            token=r.security_id,
            name=r.name,
            instrument_type=r.instrument_type,
            lot_size=r.lot_size,
            tick_size=r.tick_size,
            expiry=r.expiry,
            strike=r.strike,
        )
        scrips.append(
            Scrip(security_id=r.security_id, segment=r.segment, dhan_symbol=r.symbol, instrument=instrument)
        )
    return scrips


def scrips_from_csv(text: str) -> list[Scrip]:
    return scrips_from_rows(csv.DictReader(io.StringIO(text)))


class ScripMaster:
    """Today's master, indexed both ways: engine key -> Scrip, (segment, security id) -> Scrip."""

    def __init__(self, scrips: Iterable[Scrip]) -> None:
        self._by_key: dict[InstrumentKey, Scrip] = {}
        self._by_id: dict[tuple[str, str], Scrip] = {}
        for scrip in scrips:
            self._by_key.setdefault(scrip.key, scrip)
            self._by_id[(scrip.segment, scrip.security_id)] = scrip

    def __len__(self) -> int:
        return len(self._by_key)

    def by_key(self, key: InstrumentKey) -> Scrip | None:
        return self._by_key.get(key)

    def by_security(self, segment: str, security_id: str) -> Scrip | None:
        return self._by_id.get((segment.strip().upper(), str(security_id).strip()))

    def instruments(self) -> list[Instrument]:
        return [scrip.instrument for scrip in self._by_key.values()]


class ScripCache(DailyCache[ScripMaster]):
    """One master per source and IST day, shared by every account's client (thread-safe)."""


_caches: PerSource[ScripCache] = PerSource(ScripCache)


def shared_cache(source: str) -> ScripCache:
    return _caches.get(source)
