"""Angel One's scrip master (`OpenAPIScripMaster.json`) mapped onto the engine's instrument keys.

Angel spells instruments its own way (`NIFTY26DEC24FUT`, `NIFTY26DEC2424000CE`, `SBIN-EQ`) and
orders need its `symboltoken`. Each row is turned into the NSE-style key the rest of the product
uses (Kite's spelling: `NIFTY24DECFUT`, `NIFTY24DEC24000CE` on the month's last expiry and
`NIFTY24D1924000CE` on a weekly one, `SBIN`), so a master order in that spelling finds the child's
Angel token, and an instrument Angel does not list is not found (never guessed).

Row fields (all strings): token, symbol, name, expiry (`26DEC2024` or ""), strike (rupees x 100,
`-1.000000` for none), lotsize, instrumenttype (FUTIDX, FUTSTK, OPTIDX, OPTSTK, AMXIDX for
indices, "" for equity), exch_seg (NSE, NFO, BSE, BFO, MCX, CDS; the documentation's sample writes
`nse_cm`), tick_size (paise).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from brokers.daily_cache import DailyCache, PerSource
from brokers.scrip_rows import engine_instrument, is_monthly, last_expiries
from brokers.types import Instrument, InstrumentKey, InstrumentType

IST = ZoneInfo("Asia/Kolkata")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKLY_MONTH_CODES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "O", "N", "D")
SEGMENTS = {
    "nse_cm": "NSE",
    "nse_fo": "NFO",
    "bse_cm": "BSE",
    "bse_fo": "BFO",
    "mcx_fo": "MCX",
    "cde_fo": "CDS",
}
FUTURES = frozenset({"FUTIDX", "FUTSTK", "FUTCOM", "FUTCUR"})
OPTIONS = frozenset({"OPTIDX", "OPTSTK", "OPTFUT", "OPTCUR"})
INDEX_UNDERLYINGS = frozenset(
    {"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTYNXT50", "SENSEX", "BANKEX"}
)
HUNDRED = Decimal("100")


class ScripError(ValueError):
    """A scrip master row that cannot be read."""


@dataclass(frozen=True, slots=True)
class Scrip:
    """One Angel instrument: its own symbol and token, and the engine's instrument."""

    token: str
    angel_symbol: str
    instrument: Instrument

    @property
    def exchange(self) -> str:
        return self.instrument.exchange

    @property
    def key(self) -> InstrumentKey:
        return self.instrument.key


def parse_expiry(text: str) -> date | None:
    text = text.strip().upper()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%d%b%Y").date()
    except ValueError:
        raise ScripError(f"expiry {text!r} is not like 26DEC2024") from None


def format_expiry(day: date) -> str:
    """Angel's expiry spelling, `26DEC2024`."""
    return f"{day.day:02d}{MONTHS[day.month - 1]}{day.year}"


def strike_text(strike: Decimal) -> str:
    """24000 for 24000.00, 22.5 for 22.50 (as NSE spells strikes in symbols)."""
    normal = strike.normalize()
    return f"{normal:f}" if normal != normal.to_integral_value() else str(int(normal))


def angel_symbol(*, name: str, instrument_type: InstrumentType, expiry: date | None, strike: Decimal) -> str:
    """Angel's trading symbol for a derivative (`NIFTY26DEC24FUT`, `NIFTY26DEC2424000CE`) or an
    NSE equity (`SBIN-EQ`)."""
    if instrument_type is InstrumentType.EQ:
        return f"{name}-EQ"
    if expiry is None:
        return name
    day = f"{expiry.day:02d}{MONTHS[expiry.month - 1]}{expiry:%y}"
    if instrument_type is InstrumentType.FUT:
        return f"{name}{day}FUT"
    return f"{name}{day}{strike_text(strike)}{instrument_type.value}"


def neutral_symbol(
    *, name: str, instrument_type: InstrumentType, expiry: date | None, strike: Decimal, monthly: bool
) -> str:
    """The NSE-style (Kite) trading symbol of a derivative."""
    if expiry is None:
        return name
    if instrument_type is InstrumentType.FUT:
        return f"{name}{expiry:%y}{MONTHS[expiry.month - 1]}FUT"
    if monthly:
        return f"{name}{expiry:%y}{MONTHS[expiry.month - 1]}{strike_text(strike)}{instrument_type.value}"
    code = WEEKLY_MONTH_CODES[expiry.month - 1]
    return f"{name}{expiry:%y}{code}{expiry.day:02d}{strike_text(strike)}{instrument_type.value}"


def _decimal(row: Mapping[str, Any], field: str) -> Decimal:
    try:
        number = Decimal(str(row.get(field, "")).strip() or "0")
    except InvalidOperation:
        raise ScripError(f"{field} {row.get(field)!r} is not a number") from None
    if not number.is_finite():
        raise ScripError(f"{field} is not finite")
    return number


@dataclass(frozen=True, slots=True)
class _Row:
    token: str
    symbol: str
    name: str
    exchange: str
    kind: str
    instrument_type: InstrumentType
    expiry: date | None
    strike: Decimal
    lot_size: int
    tick_size: Decimal


def _read(row: Mapping[str, Any]) -> _Row | None:
    """One row, or None for rows the engine cannot trade (spreads, unknown kinds)."""
    token = str(row.get("token", "")).strip()
    symbol = str(row.get("symbol", "")).strip().upper()
    name = str(row.get("name", "")).strip().upper()
    segment = str(row.get("exch_seg", "")).strip()
    exchange = SEGMENTS.get(segment.lower(), segment.upper())
    kind = str(row.get("instrumenttype", "")).strip().upper()
    if not token or not symbol or not exchange:
        raise ScripError("a row without token, symbol or exch_seg")
    if kind in FUTURES:
        instrument_type = InstrumentType.FUT
    elif kind in OPTIONS:
        if symbol[-2:] not in ("CE", "PE"):
            return None
        instrument_type = InstrumentType(symbol[-2:])
    elif kind == "AMXIDX":
        instrument_type = InstrumentType.INDEX
    elif kind == "" and exchange in ("NSE", "BSE"):
        instrument_type = InstrumentType.EQ
    else:
        return None
    strike = _decimal(row, "strike")
    lot_size = int(_decimal(row, "lotsize"))
    return _Row(
        token=token,
        symbol=symbol,
        name=name,
        exchange=exchange,
        kind=kind,
        instrument_type=instrument_type,
        expiry=parse_expiry(str(row.get("expiry", ""))),
        strike=strike / HUNDRED if strike > 0 else Decimal("0"),
        lot_size=max(1, lot_size),
        tick_size=_decimal(row, "tick_size") / HUNDRED,
    )


def _neutral(row: _Row, last_expiry: Mapping[tuple[str, str, int, int], date]) -> str:
    if row.instrument_type is InstrumentType.EQ:
        if row.exchange == "NSE":
            return row.symbol.removesuffix("-EQ") if row.symbol.endswith("-EQ") else row.symbol
        return row.symbol
    if row.instrument_type is InstrumentType.INDEX:
        return row.name or row.symbol
    return neutral_symbol(
        name=row.name,
        instrument_type=row.instrument_type,
        expiry=row.expiry,
        strike=row.strike,
        monthly=is_monthly(row, last_expiry),
    )


def scrips_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Scrip]:
    """The scrip master's rows as Scrips (rows the engine cannot trade are left out)."""
    read = [r for r in (_read(row) for row in rows) if r is not None]
    last_expiry = last_expiries(read)
    scrips = []
    for r in read:
        tradingsymbol = _neutral(r, last_expiry)
        instrument = engine_instrument(
            exchange=r.exchange,
            tradingsymbol=tradingsymbol,
            token=r.token,
            name=r.name,
            instrument_type=r.instrument_type,
            lot_size=r.lot_size,
            tick_size=r.tick_size,
            expiry=r.expiry,
            strike=r.strike,
        )
        scrips.append(Scrip(token=r.token, angel_symbol=r.symbol, instrument=instrument))
    return scrips


class ScripMaster:
    """Today's scrip master, indexed both ways: engine key -> Scrip, (exchange, token) -> Scrip."""

    def __init__(self, scrips: Iterable[Scrip]) -> None:
        self._by_key: dict[InstrumentKey, Scrip] = {}
        self._by_token: dict[tuple[str, str], Scrip] = {}
        self._by_symbol: dict[tuple[str, str], Scrip] = {}
        for scrip in scrips:
            self._by_key.setdefault(scrip.key, scrip)
            self._by_token[(scrip.exchange, scrip.token)] = scrip
            self._by_symbol[(scrip.exchange, scrip.angel_symbol)] = scrip

    def __len__(self) -> int:
        return len(self._by_key)

    def by_key(self, key: InstrumentKey) -> Scrip | None:
        return self._by_key.get(key)

    def by_angel(self, *, exchange: str, token: str, symbol: str) -> Scrip | None:
        """The Scrip of a row Angel sent (order book, positions): by token, else by its symbol."""
        exchange = exchange.strip().upper()
        return self._by_token.get((exchange, token.strip())) or self._by_symbol.get(
            (exchange, symbol.strip().upper())
        )

    def instruments(self) -> list[Instrument]:
        return [scrip.instrument for scrip in self._by_key.values()]


class ScripCache(DailyCache[ScripMaster]):
    """One scrip master per source and IST day, shared by every account's client (thread-safe)."""


_caches: PerSource[ScripCache] = PerSource(ScripCache)


def shared_cache(source: str) -> ScripCache:
    """The process-wide cache of the scrip master downloaded from `source`."""
    return _caches.get(source)
