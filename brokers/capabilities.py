"""What a broker can do, as data the engine asks instead of a broker's name (DESIGN §5.1).

One frozen `Capabilities` record per broker kind: the order tag it takes, how an order is found
again (by tag, or by scanning the order book), its margin calculator, where freeze quantities come
from, its rate budgets for every window, how market orders are protected, and its session (kind and
token lifetime). Facts: `../shared/brokers/FACTS.md`. Standard library only: every adapter imports
this module, and so may the engine, the accounts app and the lab.

The engine asks `capabilities_for(account.broker)` (or a client's `capabilities`); it never
compares broker names. A new broker adds one record to `KNOWN` (or `register`s one at start-up).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")

# The engine's tag fits every broker: Angel refuses 20 characters or more (AB4008), Kite takes 20,
# Dhan 25-30, Alice Blue 50, Upstox 40, Fyers 30, all alphanumeric.
ENGINE_TAG_MAX_LENGTH = 19


class OrderLookup(enum.StrEnum):
    """How an order whose write outcome is unknown is found again by its tag."""

    BY_TAG = "by_tag"  # the broker answers a query by tag (Dhan, Upstox, Fyers)
    BOOK_SCAN = "book_scan"  # read the whole order book and match tags (Kite, Angel, Alice Blue)


class MarginCalculatorKind(enum.StrEnum):
    """The broker's margin calculator, as far as sizing can use it."""

    BASKET_HEDGED = "basket_hedged"  # basket margin, hedge-aware (Kite, Angel, Dhan multi)
    ORDER_ONLY = "order_only"  # one order at a time, no hedge benefit
    NONE = "none"  # no calculator: sizing falls back to the master's margin per unit


class FreezeSource(enum.StrEnum):
    """Where the largest quantity one order may carry comes from."""

    BROKER_MASTER = "broker_master"  # the broker's instrument master has it (Upstox, Fyers, paper)
    EXCHANGE_TABLE = "exchange_table"  # the staff-kept table seeded from the exchange's limits


class MarketProtection(enum.StrEnum):
    """How a MARKET (or SL-M) order is kept from filling at any price."""

    SEND_PARAMETER = "send_parameter"  # the adapter sends a protection percentage (Kite, Alice, Upstox)
    BROKER_SIDE = "broker_side"  # the broker turns it into a LIMIT with its own protection (Angel)
    NONE = "none"  # nothing to do (the paper exchange fills at the last price)


class SessionKind(enum.StrEnum):
    """How an account gets the day's token."""

    DAILY_REDIRECT = "daily_redirect"  # a person logs in through the broker's page every day (Kite)
    HEADLESS_TOTP = "headless_totp"  # the server logs in with client code, PIN and a stored TOTP (Angel)
    LONG_TOKEN = "long_token"  # noqa: S105 - a token lasting weeks or months (Alice Blue vendor session)
    NONE = "none"  # no session at all (the paper exchange)


@dataclass(frozen=True, slots=True)
class TagRule:
    """The order tag a broker accepts: at most `max_length` characters matching `charset`."""

    max_length: int
    charset: str = "A-Za-z0-9"  # a regular-expression character class body

    def fits(self, tag: str) -> bool:
        return 0 < len(tag) <= self.max_length and re.fullmatch(f"[{self.charset}]+", tag) is not None


@dataclass(frozen=True, slots=True)
class MarginCalculator:
    kind: MarginCalculatorKind
    includes_positions: bool = False  # the basket call can take the account's open positions into account
    max_legs: int | None = None  # most orders in one call; None when unbounded or not published

    @property
    def basket(self) -> bool:
        return self.kind is MarginCalculatorKind.BASKET_HEDGED

    @property
    def available(self) -> bool:
        return self.kind is not MarginCalculatorKind.NONE


@dataclass(frozen=True, slots=True)
class RateBudget:
    """Calls allowed per window; None means the window has no limit."""

    per_second: int | None = None
    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None

    def windows(self) -> tuple[tuple[float, int], ...]:
        """(window in seconds, calls allowed) for every limited window, shortest first."""
        spans = (
            (1.0, self.per_second),
            (60.0, self.per_minute),
            (3600.0, self.per_hour),
            (86400.0, self.per_day),
        )
        return tuple((span, cap) for span, cap in spans if cap is not None)


@dataclass(frozen=True, slots=True)
class Session:
    """How the day's token is obtained and when it dies.

    `expires_at` is the IST wall-clock time a token dies at, on the first such moment after it was
    obtained (Kite 06:00 the next morning, Angel midnight); `lifetime` instead, a token that lives
    that long from when it was obtained (Dhan's 24 hours); neither: the token does not expire on a
    schedule (or there is no token).
    """

    kind: SessionKind
    expires_at: time | None = None
    lifetime: timedelta | None = None  # a token that lives so long from when it was obtained (Dhan 24 h)

    @property
    def needs_token(self) -> bool:
        return self.kind is not SessionKind.NONE

    @property
    def interactive(self) -> bool:
        """A person must log in (the server cannot renew the token by itself)."""
        return self.kind is SessionKind.DAILY_REDIRECT

    def token_expiry(self, obtained_at: datetime) -> datetime | None:
        """When a token obtained at `obtained_at` (aware) dies, aware UTC; None when it does not."""
        if self.lifetime is not None:
            return (obtained_at + self.lifetime).astimezone(UTC)
        if self.expires_at is None:
            return None
        local = obtained_at.astimezone(IST)
        expiry = datetime.combine(local.date(), self.expires_at, tzinfo=IST)
        if expiry <= local:
            expiry += timedelta(days=1)
        return expiry.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one broker kind can do. The engine reads these, never the broker's name."""

    broker: str
    tag: TagRule
    order_lookup: OrderLookup
    margin: MarginCalculator
    freeze_source: FreezeSource
    write_limits: RateBudget  # the broker's published limits for order writes (place+modify+cancel)
    write_budget: RateBudget  # what the engine spends per account (below the limits)
    book_reads: RateBudget  # order-book / positions reads
    market_protection: MarketProtection
    session: Session
    slicer_max_slices: int | None = None  # the broker's own slicing (not used by the engine)
    label: str = ""  # the short human name ("Kite"), for messages
    symbology: str = "nse"  # how its instruments are named on the wire; "nse": NSE-style symbols

    @property
    def name(self) -> str:
        """The label, else the broker kind."""
        return self.label or self.broker

    def fits_tag(self, tag: str) -> bool:
        return self.tag.fits(tag)


KITE = Capabilities(
    broker="kite",
    tag=TagRule(max_length=20),
    order_lookup=OrderLookup.BOOK_SCAN,
    margin=MarginCalculator(MarginCalculatorKind.BASKET_HEDGED, includes_positions=True),
    freeze_source=FreezeSource.EXCHANGE_TABLE,  # the instruments CSV has none
    write_limits=RateBudget(per_second=10, per_minute=400, per_day=5000),
    # The engine's long-standing budget: well under Kite's limits (replication.ratelimit).
    write_budget=RateBudget(per_second=8, per_minute=180, per_day=4500),
    book_reads=RateBudget(per_second=10),
    market_protection=MarketProtection.SEND_PARAMETER,
    session=Session(SessionKind.DAILY_REDIRECT, expires_at=time(6, 0)),
    slicer_max_slices=10,
    label="Kite",
)

ANGEL = Capabilities(
    broker="angel",
    tag=TagRule(max_length=19),  # "less than 20 characters" (AB4008)
    order_lookup=OrderLookup.BOOK_SCAN,
    # /margin/v1/batch: hedge-aware across the basket, no flag for existing positions; most legs
    # per call not published.
    margin=MarginCalculator(MarginCalculatorKind.BASKET_HEDGED, includes_positions=False),
    freeze_source=FreezeSource.EXCHANGE_TABLE,  # the scrip master has lot sizes, no freeze quantity
    write_limits=RateBudget(per_second=9, per_minute=500, per_hour=1000),
    write_budget=RateBudget(per_second=8, per_minute=180, per_hour=900),
    book_reads=RateBudget(per_second=1),
    market_protection=MarketProtection.BROKER_SIDE,
    session=Session(SessionKind.HEADLESS_TOTP, expires_at=time(0, 0)),
    label="Angel One",
    symbology="angel",  # its own trading symbols and symboltokens (scrip master JSON)
)

DHAN = Capabilities(
    broker="dhan",
    # correlationId: documented 30, one sandbox measurement accepted 25 of [A-Za-z0-9 _-]; the
    # engine's 19 alphanumerics fit either way.
    tag=TagRule(max_length=25, charset="A-Za-z0-9 _-"),
    order_lookup=OrderLookup.BY_TAG,  # GET /orders/external/{correlationId}
    # /margincalculator/multi: includePosition, includeOrders, hedge benefit.
    margin=MarginCalculator(MarginCalculatorKind.BASKET_HEDGED, includes_positions=True),
    freeze_source=FreezeSource.EXCHANGE_TABLE,  # the scrip master has LOT_SIZE, no freeze column
    write_limits=RateBudget(per_second=10, per_minute=250, per_hour=1000, per_day=7000),
    write_budget=RateBudget(per_second=8, per_minute=200, per_hour=900, per_day=6500),
    book_reads=RateBudget(per_second=10),
    market_protection=MarketProtection.BROKER_SIDE,  # converted to LIMIT with MPP since 21 Mar 2026
    session=Session(SessionKind.HEADLESS_TOTP, lifetime=timedelta(hours=24)),
    label="Dhan",
    symbology="dhan",  # security id and exchange segment (scrip master)
)

ALICE = Capabilities(
    broker="alice",
    tag=TagRule(max_length=50),  # orderTag: 51 characters or more refused (EC971)
    order_lookup=OrderLookup.BOOK_SCAN,
    # /orders/checkMargin and /orders/basket/margin; no flag for existing positions.
    margin=MarginCalculator(MarginCalculatorKind.BASKET_HEDGED, includes_positions=False),
    freeze_source=FreezeSource.EXCHANGE_TABLE,  # the contract master has lot sizes, no freeze quantity
    # Orders "NOT LIMITED" by Alice Blue; SEBI's 10 orders a second per client still applies.
    write_limits=RateBudget(per_second=10),
    write_budget=RateBudget(per_second=8, per_minute=180, per_day=4500),
    book_reads=RateBudget(per_minute=120),  # other calls: 1,800 per 15 minutes
    market_protection=MarketProtection.SEND_PARAMETER,  # marketProtectionPercent
    session=Session(SessionKind.LONG_TOKEN),  # the vendor userSession's lifetime is not documented
    label="Alice Blue",
    symbology="alice",  # its contract master's instrument ids
)

PAPER = Capabilities(
    broker="paper",
    tag=TagRule(max_length=20),
    order_lookup=OrderLookup.BOOK_SCAN,
    margin=MarginCalculator(MarginCalculatorKind.BASKET_HEDGED, includes_positions=True),
    freeze_source=FreezeSource.BROKER_MASTER,  # PaperInstrument.freeze_quantity
    write_limits=RateBudget(),
    write_budget=RateBudget(per_second=8, per_minute=180, per_day=4500),
    book_reads=RateBudget(),
    market_protection=MarketProtection.NONE,
    session=Session(SessionKind.NONE),
    label="paper",
)

KNOWN: dict[str, Capabilities] = {caps.broker: caps for caps in (KITE, ANGEL, DHAN, ALICE, PAPER)}
_registered: dict[str, Capabilities] = {}


class UnknownCapabilities(LookupError):
    pass


def register(caps: Capabilities) -> Capabilities | None:
    """Install (or replace) a broker kind's record; returns the previous one (to restore it)."""
    previous = _registered.get(caps.broker) or KNOWN.get(caps.broker)
    _registered[caps.broker] = caps
    return previous


def unregister(broker: str) -> None:
    """Back to the built-in record for this broker kind."""
    _registered.pop(broker, None)


def capabilities_for(broker: str) -> Capabilities:
    """The record for a broker kind (an Account's `broker`). Raises UnknownCapabilities."""
    caps = _registered.get(broker) or KNOWN.get(broker)
    if caps is None:
        raise UnknownCapabilities(f"no capabilities known for broker {broker!r}")
    return caps


def engine_tag_fits_every_broker() -> bool:
    """True when the engine's tag limit is within every known broker's (checked by the tests)."""
    records = (*KNOWN.values(), *_registered.values())
    return all(caps.tag.max_length >= ENGINE_TAG_MAX_LENGTH for caps in records)
