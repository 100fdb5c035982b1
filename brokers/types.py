"""Vendor-neutral broker types. Money is Decimal, quantities are int units, times are aware UTC.

The broker vocabulary (side, order type, product, validity, order status, instrument type) is
declared here once: the adapters, the engine and the paper exchange's models (`choices=`) use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


class Vocabulary(enum.StrEnum):
    """A closed set of broker words, valued as Kite spells them."""

    @property
    def label(self) -> str:
        """The human name (admin, forms)."""
        return LABELS.get(self, self.value)

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(value, label) pairs for a Django field's `choices=`."""
        return [(member.value, member.label) for member in cls]


class Side(Vocabulary):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(Vocabulary):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"
    SLM = "SL-M"


class Product(Vocabulary):
    MIS = "MIS"
    NRML = "NRML"
    CNC = "CNC"
    MTF = "MTF"


class Validity(Vocabulary):
    DAY = "DAY"
    IOC = "IOC"
    TTL = "TTL"


class OrderStatus(Vocabulary):
    """Broker-side order status (Kite's vocabulary, normalised)."""

    PENDING = "PENDING"  # OPEN PENDING, VALIDATION PENDING, PUT ORDER REQ RECEIVED, MODIFY ...
    OPEN = "OPEN"
    TRIGGER_PENDING = "TRIGGER PENDING"
    COMPLETE = "COMPLETE"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.COMPLETE, OrderStatus.CANCELLED, OrderStatus.REJECTED)

    @property
    def is_open(self) -> bool:
        return not self.is_final


class InstrumentType(Vocabulary):
    EQ = "EQ"
    FUT = "FUT"
    CE = "CE"
    PE = "PE"
    INDEX = "INDEX"


LABELS: dict[Vocabulary, str] = {
    Side.BUY: "Buy",
    Side.SELL: "Sell",
    OrderType.MARKET: "Market",
    OrderType.LIMIT: "Limit",
    OrderType.SL: "Stop-loss limit",
    OrderType.SLM: "Stop-loss market",
    Product.MIS: "Intraday",
    Product.NRML: "Carry forward",
    Product.CNC: "Delivery",
    Product.MTF: "Margin trading facility",
    Validity.DAY: "Day",
    Validity.IOC: "Immediate or cancel",
    Validity.TTL: "Time to live (minutes)",
    OrderStatus.PENDING: "Pending",
    OrderStatus.OPEN: "Open",
    OrderStatus.TRIGGER_PENDING: "Trigger pending",
    OrderStatus.COMPLETE: "Complete",
    OrderStatus.CANCELLED: "Cancelled",
    OrderStatus.REJECTED: "Rejected",
    InstrumentType.EQ: "Equity",
    InstrumentType.FUT: "Future",
    InstrumentType.CE: "Call option",
    InstrumentType.PE: "Put option",
    InstrumentType.INDEX: "Index (not tradable)",
}


@dataclass(frozen=True, slots=True)
class InstrumentKey:
    exchange: str
    tradingsymbol: str

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @classmethod
    def parse(cls, text: str) -> InstrumentKey:
        exchange, sep, symbol = text.partition(":")
        if not sep or not exchange or not symbol:
            raise ValueError(f"instrument must look like EXCHANGE:SYMBOL, got {text!r}")
        return cls(exchange.upper(), symbol.upper())


@dataclass(frozen=True, slots=True)
class Instrument:
    exchange: str
    tradingsymbol: str
    instrument_token: int
    name: str
    instrument_type: InstrumentType
    segment: str
    lot_size: int
    tick_size: Decimal
    expiry: datetime | None = None
    strike: Decimal = Decimal("0")
    underlying: str = ""
    last_price: Decimal = Decimal("0")
    freeze_quantity: int | None = None

    @property
    def key(self) -> InstrumentKey:
        return InstrumentKey(self.exchange, self.tradingsymbol)


@dataclass(frozen=True, slots=True)
class SegmentFunds:
    segment: str
    enabled: bool
    used: Decimal  # utilised.debits
    available: Decimal  # net


@dataclass(frozen=True, slots=True)
class Funds:
    """Account margins summed over enabled segments: U = Σ debits, A = Σ net, C = U + A."""

    used: Decimal
    available: Decimal
    segments: tuple[SegmentFunds, ...] = ()

    @property
    def capital(self) -> Decimal:
        return self.used + self.available

    @classmethod
    def from_segments(cls, segments: tuple[SegmentFunds, ...]) -> Funds:
        enabled = [s for s in segments if s.enabled]
        return cls(
            used=sum((s.used for s in enabled), Decimal("0")),
            available=sum((s.available for s in enabled), Decimal("0")),
            segments=segments,
        )


@dataclass(frozen=True, slots=True)
class OrderRequest:
    exchange: str
    tradingsymbol: str
    side: Side
    quantity: int
    product: Product
    order_type: OrderType
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    validity: Validity = Validity.DAY
    variety: str = "regular"
    tag: str = ""
    market_protection: int | None = None

    @property
    def key(self) -> InstrumentKey:
        return InstrumentKey(self.exchange, self.tradingsymbol)


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    exchange: str
    tradingsymbol: str
    side: Side
    order_type: OrderType
    product: Product
    quantity: int
    status: OrderStatus
    price: Decimal = Decimal("0")
    trigger_price: Decimal = Decimal("0")
    filled_quantity: int = 0
    average_price: Decimal = Decimal("0")
    pending_quantity: int = 0
    cancelled_quantity: int = 0
    validity: Validity = Validity.DAY
    variety: str = "regular"
    tag: str = ""
    status_message: str = ""
    placed_at: datetime | None = None
    updated_at: datetime | None = None
    parent_order_id: str | None = None

    @property
    def key(self) -> InstrumentKey:
        return InstrumentKey(self.exchange, self.tradingsymbol)


@dataclass(frozen=True, slots=True)
class Position:
    exchange: str
    tradingsymbol: str
    product: Product
    quantity: int  # signed: long > 0, short < 0
    average_price: Decimal = Decimal("0")
    last_price: Decimal = Decimal("0")
    realised_pnl: Decimal = Decimal("0")
    unrealised_pnl: Decimal = Decimal("0")

    @property
    def key(self) -> InstrumentKey:
        return InstrumentKey(self.exchange, self.tradingsymbol)

    @property
    def pnl(self) -> Decimal:
        return self.realised_pnl + self.unrealised_pnl


@dataclass(frozen=True, slots=True)
class MarginEstimate:
    """Margin the broker would block for one order or a basket."""

    total: Decimal
    span: Decimal = Decimal("0")
    exposure: Decimal = Decimal("0")
    option_premium: Decimal = Decimal("0")
    per_order: tuple[Decimal, ...] = field(default_factory=tuple)
