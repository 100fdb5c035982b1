"""Alice Blue's contract master V2 mapped onto the engine's instrument keys (docs/alice.md
§Contract master).

Alice Blue publishes one file per exchange, refreshed at 08:00 IST, at
`https://v2api.aliceblueonline.com/restpy/static/contract_master/V2/<EXCH>.csv` (the SDK's own
download uses the legacy folder retired on 30 Nov 2025, so the adapter fetches V2 itself). Columns:
Exch, Exchange Segment, Symbol, Token, Instrument Type, Option Type, Strike Price, Instrument Name,
Formatted Instrument Name, Trading Symbol, Expiry Date, Lot Size, Tick Size. Orders name the
instrument by its `Token` (`instrumentId`) and exchange. Each row becomes the NSE-style key the rest
of the product uses (`NIFTY24DECFUT`, `NIFTY24DEC24000CE` on the month's last expiry,
`NIFTY24D1924000CE` on a weekly one, `SBIN`); an instrument Alice Blue does not list is not found.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from brokers.daily_cache import DailyCache, PerSource
from brokers.scrip_rows import engine_instrument, is_monthly, last_expiries
from brokers.types import Instrument, InstrumentKey, InstrumentType

IST = ZoneInfo("Asia/Kolkata")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKLY_MONTH_CODES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "O", "N", "D")
FUTURES = frozenset({"FUTIDX", "FUTSTK", "FUTCOM", "FUTCUR", "IF", "SF"})
OPTIONS = frozenset({"OPTIDX", "OPTSTK", "OPTFUT", "OPTCUR", "IO", "SO"})
EQUITY = frozenset({"", "EQ", "BE", "EQUITY"})
INDEX_KINDS = frozenset({"INDEX", "INDICES"})
EXCHANGES = ("NSE", "NFO")  # the segments the engine trades; BSE, BFO, MCX can be added
COLUMNS = (
    "Exch",
    "Exchange Segment",
    "Symbol",
    "Token",
    "Instrument Type",
    "Option Type",
    "Strike Price",
    "Instrument Name",
    "Formatted Instrument Name",
    "Trading Symbol",
    "Expiry Date",
    "Lot Size",
    "Tick Size",
)


class ContractError(ValueError):
    """A contract master row that cannot be read."""


@dataclass(frozen=True, slots=True)
class Contract:
    """One Alice Blue instrument: its token (`instrumentId`), its own symbol, the engine's instrument."""

    token: str
    alice_symbol: str
    instrument: Instrument

    @property
    def exchange(self) -> str:
        return self.instrument.exchange

    @property
    def key(self) -> InstrumentKey:
        return self.instrument.key


def strike_text(strike: Decimal) -> str:
    normal = strike.normalize()
    return f"{normal:f}" if normal != normal.to_integral_value() else str(int(normal))


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


def parse_expiry(text: str) -> date | None:
    text = text.strip()
    if not text or text in ("0", "-1", "NA"):
        return None
    if text.isdigit():  # epoch milliseconds (the legacy JSON files)
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC).astimezone(IST).date()
    for fmt in ("%Y-%m-%d", "%d-%m-%Y", "%d%b%Y", "%d-%b-%Y", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text.upper() if "b" in fmt else text, fmt).date()
        except ValueError:
            continue
    raise ContractError(f"expiry {text!r} is not a date")


def _decimal(row: Mapping[str, Any], field: str) -> Decimal:
    text = str(row.get(field) or "").strip() or "0"
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ContractError(f"{field} {text[:20]!r} is not a number") from None
    if not number.is_finite():
        raise ContractError(f"{field} is not finite")
    return number


@dataclass(frozen=True, slots=True)
class _Row:
    token: str
    symbol: str
    name: str
    exchange: str
    instrument_type: InstrumentType
    expiry: date | None
    strike: Decimal
    lot_size: int
    tick_size: Decimal


def _read(row: Mapping[str, Any]) -> _Row | None:
    token = str(row.get("Token") or "").strip()
    exchange = str(row.get("Exch") or "").strip().upper()
    name = str(row.get("Symbol") or "").strip().upper()
    symbol = str(row.get("Trading Symbol") or "").strip().upper() or name
    kind = str(row.get("Instrument Type") or "").strip().upper()
    option = str(row.get("Option Type") or "").strip().upper()
    if not token or not exchange or not name:
        raise ContractError("a row without Token, Exch or Symbol")
    if kind in FUTURES:
        instrument_type = InstrumentType.FUT
    elif kind in OPTIONS:
        if option not in ("CE", "PE"):
            return None
        instrument_type = InstrumentType(option)
    elif kind in INDEX_KINDS or exchange == "INDICES":
        instrument_type = InstrumentType.INDEX
    elif kind in EQUITY and exchange in ("NSE", "BSE"):
        instrument_type = InstrumentType.EQ
    else:
        return None
    strike = _decimal(row, "Strike Price")
    return _Row(
        token=token,
        symbol=symbol,
        name=name,
        exchange="NSE" if exchange == "INDICES" else exchange,
        instrument_type=instrument_type,
        expiry=parse_expiry(str(row.get("Expiry Date") or "")),
        strike=strike if strike > 0 else Decimal("0"),
        lot_size=max(1, int(_decimal(row, "Lot Size"))),
        tick_size=_decimal(row, "Tick Size"),
    )


def contracts_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Contract]:
    """The contract master's rows as Contracts (rows the engine cannot trade are left out)."""
    read = [r for r in (_read(row) for row in rows) if r is not None]
    last_expiry = last_expiries(read)
    contracts = []
    for r in read:
        if r.instrument_type is InstrumentType.EQ:
            tradingsymbol = r.name.removesuffix("-EQ")
        elif r.instrument_type is InstrumentType.INDEX:
            tradingsymbol = r.name
        else:
            tradingsymbol = neutral_symbol(
                name=r.name,
                instrument_type=r.instrument_type,
                expiry=r.expiry,
                strike=r.strike,
                monthly=is_monthly(r, last_expiry),
            )
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
        contracts.append(Contract(token=r.token, alice_symbol=r.symbol, instrument=instrument))
    return contracts


def rows_from_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = {"Exch", "Symbol", "Token"} - set(reader.fieldnames or ())
    if missing:
        raise ContractError(f"contract master without the columns {sorted(missing)}")
    return [{k.strip(): (v or "") for k, v in row.items() if k} for row in reader]


class ContractMaster:
    """Today's contract master, indexed both ways: engine key -> Contract, (exchange, token) -> Contract."""

    def __init__(self, contracts: Iterable[Contract]) -> None:
        self._by_key: dict[InstrumentKey, Contract] = {}
        self._by_token: dict[tuple[str, str], Contract] = {}
        self._by_symbol: dict[tuple[str, str], Contract] = {}
        for contract in contracts:
            self._by_key.setdefault(contract.key, contract)
            self._by_token[(contract.exchange, contract.token)] = contract
            self._by_symbol[(contract.exchange, contract.alice_symbol)] = contract

    def __len__(self) -> int:
        return len(self._by_key)

    def by_key(self, key: InstrumentKey) -> Contract | None:
        return self._by_key.get(key)

    def by_alice(self, *, exchange: str, token: str, symbol: str = "") -> Contract | None:
        exchange = exchange.strip().upper()
        return self._by_token.get((exchange, token.strip())) or self._by_symbol.get(
            (exchange, symbol.strip().upper())
        )

    def instruments(self) -> list[Instrument]:
        return [contract.instrument for contract in self._by_key.values()]


class ContractCache(DailyCache[ContractMaster]):
    """One contract master per source and IST day, shared by every account's client (thread-safe)."""


_caches: PerSource[ContractCache] = PerSource(ContractCache)


def shared_cache(source: str) -> ContractCache:
    return _caches.get(source)
