"""Neutral instrument identity: one instrument, every broker's own token for it (DESIGN §5.1).

Every adapter speaks NSE-style trading symbols (Kite's: `NIFTY26DEC24000CE`) in its orders,
positions and requests, and maps them to its own identity inside (Angel's `symboltoken`, Dhan's
`securityId`). The neutral key of an instrument is (exchange, underlying, type, expiry, strike);
its NSE-style `symbol` names it. Each broker's instrument master (Kite's CSV, Angel's scrip
master JSON) is read through an `InstrumentMaster`, once per trading day, cached in the process
(`LISTINGS`) and stored in `BrokerInstrument` (the admin shows it; another process may read it).

Brokers whose capabilities share a `symbology` (Kite and the paper exchange: both NSE-style by
construction) need no mapping between them. An order for a child whose broker speaks another
symbology is sent only when that broker lists the instrument (`listing_reason`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Protocol

from django.db import transaction

from brokers.capabilities import IST, UnknownCapabilities, capabilities_for
from brokers.models import BrokerInstrument
from brokers.types import Instrument, InstrumentType

logger = logging.getLogger(__name__)

ROLLOVER = time(8, 30)  # masters are regenerated before the open: the day starts here (IST)
NOT_LISTED = "not_listed_at_broker"


def trading_day(now: datetime | None = None) -> date:
    """The IST date whose instrument masters are current at `now` (aware), the day starting 08:30."""
    local = (now or datetime.now(UTC)).astimezone(IST)
    return (local - timedelta(hours=ROLLOVER.hour, minutes=ROLLOVER.minute)).date()


@dataclass(frozen=True, slots=True)
class NeutralKey:
    """An instrument whatever the broker: exchange, underlying, type, expiry, strike."""

    exchange: str
    underlying: str
    instrument_type: str
    expiry: date | None
    strike: Decimal


@dataclass(frozen=True, slots=True)
class ListedInstrument:
    """One instrument as one broker lists it: the neutral identity and the broker's own."""

    broker: str
    exchange: str
    symbol: str  # NSE-style trading symbol: what the engine and every adapter's callers use
    instrument_type: str
    lot_size: int
    underlying: str = ""
    expiry: date | None = None
    strike: Decimal = Decimal("0")
    tick_size: Decimal = Decimal("0.05")
    freeze_quantity: int | None = None
    broker_token: str = ""  # Kite instrument_token, Angel symboltoken, Dhan securityId
    broker_symbol: str = ""  # the broker's own symbol when it differs (Angel's trading symbol)

    @property
    def key(self) -> NeutralKey:
        return NeutralKey(self.exchange, self.underlying, self.instrument_type, self.expiry, self.strike)

    @property
    def name(self) -> tuple[str, str]:
        return (self.exchange, self.symbol)


class InstrumentMaster(Protocol):
    """A broker's instrument master. The Angel adapter implements one over the scrip master JSON,
    giving each row its NSE-style `symbol` (built from name, expiry, strike and type)."""

    broker: str

    def download(self) -> list[ListedInstrument]:
        """Today's instruments. Raises a brokers.errors.BrokerError when it cannot be read."""
        ...


def listed_from_instruments(broker: str, instruments: Iterable[Instrument]) -> list[ListedInstrument]:
    """A `BrokerClient.instruments()` list (already NSE-style symbols) as listed instruments."""
    return [
        ListedInstrument(
            broker=broker,
            exchange=i.exchange,
            symbol=i.tradingsymbol,
            instrument_type=i.instrument_type.value,
            lot_size=i.lot_size,
            underlying=i.underlying or i.name,
            expiry=i.expiry.astimezone(IST).date() if i.expiry else None,
            strike=i.strike,
            tick_size=i.tick_size,
            freeze_quantity=i.freeze_quantity,
            broker_token=str(i.instrument_token or ""),
            broker_symbol=i.tradingsymbol,
        )
        for i in instruments
        if i.instrument_type is not InstrumentType.INDEX
    ]


class ClientMaster:
    """The master of a broker whose client lists its instruments (`BrokerClient.instruments()`:
    Kite's CSV, the paper exchange's table)."""

    def __init__(self, broker: str, instruments: Callable[[], Sequence[Instrument]]) -> None:
        self.broker = broker
        self._instruments = instruments

    def download(self) -> list[ListedInstrument]:
        return listed_from_instruments(self.broker, self._instruments())


MasterFactory = Callable[[str, Callable[[], Sequence[Instrument]]], InstrumentMaster]
_masters: dict[str, MasterFactory] = {}


def register_master(broker: str, factory: MasterFactory) -> None:
    """Install how `broker`'s master is read (given the broker kind and an account client's
    `instruments`); the default reads `instruments()` as NSE-style rows (`ClientMaster`)."""
    _masters[broker] = factory


def master_for(broker: str, instruments: Callable[[], Sequence[Instrument]]) -> InstrumentMaster:
    """The instrument master of `broker`, read through an account's client."""
    return _masters.get(broker, ClientMaster)(broker, instruments)


def instruments_store(broker: str, listed: Sequence[ListedInstrument], *, day: date) -> int:
    """Replace `broker`'s stored master with `listed` (one transaction); returns the rows stored."""
    rows = {
        (i.exchange, i.symbol): BrokerInstrument(
            broker=broker,
            exchange=i.exchange,
            symbol=i.symbol,
            underlying=i.underlying,
            instrument_type=i.instrument_type,
            expiry=i.expiry,
            strike=i.strike,
            lot_size=max(1, i.lot_size),
            tick_size=i.tick_size,
            freeze_quantity=i.freeze_quantity,
            broker_token=i.broker_token[:64],
            broker_symbol=i.broker_symbol[:64],
            trading_day=day,
        )
        for i in listed
    }
    with transaction.atomic():
        BrokerInstrument.objects.filter(broker=broker).delete()
        BrokerInstrument.objects.bulk_create(rows.values(), batch_size=1000)
    return len(rows)


def _from_row(row: BrokerInstrument) -> ListedInstrument:
    return ListedInstrument(
        broker=row.broker,
        exchange=row.exchange,
        symbol=row.symbol,
        instrument_type=row.instrument_type,
        lot_size=row.lot_size,
        underlying=row.underlying,
        expiry=row.expiry,
        strike=row.strike,
        tick_size=row.tick_size,
        freeze_quantity=row.freeze_quantity,
        broker_token=row.broker_token,
        broker_symbol=row.broker_symbol,
    )


def stored_listing(broker: str, *, day: date) -> list[ListedInstrument] | None:
    """`broker`'s master as stored for `day` (None: not stored for that day)."""
    rows = list(BrokerInstrument.objects.filter(broker=broker, trading_day=day))
    return [_from_row(row) for row in rows] if rows else None


class Listings:
    """Each broker's master for the trading day, loaded once (from the database when another
    process stored today's, else downloaded and stored) and kept in the process."""

    def __init__(self, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[date, dict[tuple[str, str], ListedInstrument]]] = {}

    def get(self, master: InstrumentMaster) -> dict[tuple[str, str], ListedInstrument]:
        """(exchange, NSE-style symbol) -> listed instrument, for today. Download errors propagate."""
        day = trading_day(self._clock())
        with self._lock:
            cached = self._loaded.get(master.broker)
            if cached is not None and cached[0] == day:
                return cached[1]
        listed = stored_listing(master.broker, day=day)
        if listed is None:
            listed = master.download()
            instruments_store(master.broker, listed, day=day)
        return self._keep(master.broker, day, listed)

    def find(
        self, master: InstrumentMaster, exchange: str, symbol: str
    ) -> tuple[dict[tuple[str, str], ListedInstrument], ListedInstrument | None]:
        """Today's listing and the instrument in it (None: not listed). A name missing from the
        kept listing is looked for once more in a fresh read of the master (adapters keep their
        master for the day, so that read is cheap): a contract listed since is never refused."""
        name = (exchange.upper(), symbol.upper())
        listing = self.get(master)
        if not listing or name in listing:
            return listing, listing.get(name)
        day = trading_day(self._clock())
        fresh = master.download()
        if {i.name for i in fresh} != listing.keys():
            instruments_store(master.broker, fresh, day=day)
        listing = self._keep(master.broker, day, fresh)
        return listing, listing.get(name)

    def _keep(
        self, broker: str, day: date, listed: Sequence[ListedInstrument]
    ) -> dict[tuple[str, str], ListedInstrument]:
        by_name = {i.name: i for i in listed}
        with self._lock:
            self._loaded[broker] = (day, by_name)
        return by_name

    def lookup(self, master: InstrumentMaster, exchange: str, symbol: str) -> ListedInstrument | None:
        return self.find(master, exchange, symbol)[1]

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()


LISTINGS = Listings()


def same_symbology(broker_a: str, broker_b: str) -> bool:
    """True when both brokers name instruments alike (no mapping, no listing check between them).
    A broker without a capability record is taken to differ."""
    if broker_a == broker_b:
        return True
    try:
        return capabilities_for(broker_a).symbology == capabilities_for(broker_b).symbology
    except UnknownCapabilities:
        return False


def listing_reason(master: InstrumentMaster, exchange: str, symbol: str) -> str:
    """Why an order in (exchange, symbol) cannot go to `master`'s broker ("" if it can, or when
    its master lists nothing today: then the adapter decides). Download errors propagate."""
    listing, found = LISTINGS.find(master, exchange, symbol)
    if found is not None or not listing:
        return ""
    return f"{exchange}:{symbol} is not listed at this child's broker"


def matches_filter(entry: str, *, exchange: str, symbol: str, underlying: str) -> bool:
    """An allowed/blocked instrument filter entry against an instrument: `NFO:NIFTY26DECFUT` (one
    contract), `NFO:NIFTY` or `NIFTY` (every contract on the underlying NIFTY)."""
    text = entry.strip().upper()
    where, sep, name = text.partition(":")
    if not sep:
        where, name = "", text
    if where and where != exchange.upper():
        return False
    return name in (symbol.upper(), underlying.upper())
