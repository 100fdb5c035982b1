"""Paper exchange data: accounts with cash, instruments with prices, orders, fills and positions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from django.db import models
from django.utils import timezone

# The broker vocabulary is declared once, in brokers.types; re-exported for the exchange's callers.
from brokers.types import InstrumentType as InstrumentType
from brokers.types import OrderStatus as OrderStatus
from brokers.types import OrderType as OrderType
from brokers.types import Product as Product
from brokers.types import Side as Side
from brokers.types import Validity as Validity
from pms.fastload import FastLoadMixin

IST = ZoneInfo("Asia/Kolkata")  # the exchange's clock: trading dates and order-id dates
MONEY: dict[str, Any] = {"max_digits": 18, "decimal_places": 2}
PRICE: dict[str, Any] = {"max_digits": 18, "decimal_places": 4}


def trading_date(now: datetime | None = None) -> date:
    """The exchange's date (IST) at `now` (default: now): what "expired" is judged against."""
    return timezone.localdate(now or timezone.now(), IST)


def live_on(day: date) -> models.Q:
    """Instruments still trading on `day`: no expiry, or an expiry on or after it."""
    return models.Q(expiry__isnull=True) | models.Q(expiry__gte=day)


class InvalidTransition(Exception):
    """A status change that the allowed-transitions map does not permit."""


# Statuses: Kite's vocabulary. The paper exchange accepts or rejects an order at once (never
# PENDING); OPEN and TRIGGER PENDING are live, the rest final.
LIVE_STATUSES = (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING)

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.TRIGGER_PENDING: frozenset({OrderStatus.OPEN, OrderStatus.COMPLETE, OrderStatus.CANCELLED}),
    # OPEN -> TRIGGER PENDING: a LIMIT order modified into a stop-loss whose trigger is not reached.
    OrderStatus.OPEN: frozenset({OrderStatus.TRIGGER_PENDING, OrderStatus.COMPLETE, OrderStatus.CANCELLED}),
    OrderStatus.COMPLETE: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


class PaperAccount(FastLoadMixin, models.Model):
    """A simulated trading account. `cash` is the opening capital ledger."""

    user_id = models.CharField(max_length=64, unique=True)
    cash = models.DecimalField(**MONEY, default=Decimal("0"))
    order_seq = models.PositiveBigIntegerField(default=0, help_text="Last order number used.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("user_id",)

    def __str__(self) -> str:
        return self.user_id


class PaperInstrument(FastLoadMixin, models.Model):
    """A tradable instrument (or an index, for its price). Keyed by (exchange, tradingsymbol)."""

    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    instrument_token = models.PositiveBigIntegerField(default=0)
    exchange_token = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=128, blank=True)
    underlying = models.CharField(max_length=64, blank=True, db_index=True)
    instrument_type = models.CharField(max_length=8, choices=InstrumentType.choices())
    segment = models.CharField(max_length=16)
    lot_size = models.PositiveIntegerField(default=1)
    tick_size = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal("0.05"))
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(**PRICE, default=Decimal("0"))
    last_price = models.DecimalField(**PRICE, default=Decimal("0"))
    freeze_quantity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Largest quantity one order may carry (exchange freeze)."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("exchange", "tradingsymbol")
        constraints = [
            models.UniqueConstraint(fields=("exchange", "tradingsymbol"), name="paper_instrument_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def key_text(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    def expired_on(self, day: date) -> bool:
        """Whether the contract had expired by `day`: it trades through its expiry date, not after."""
        return self.expiry is not None and self.expiry < day

    @property
    def is_option(self) -> bool:
        return self.instrument_type in (InstrumentType.CE, InstrumentType.PE)

    @property
    def is_derivative(self) -> bool:
        return self.instrument_type in (InstrumentType.FUT, InstrumentType.CE, InstrumentType.PE)


class PaperOrder(FastLoadMixin, models.Model):
    """One order in a paper account's book; statuses move only through `set_status`."""

    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="orders")
    instrument = models.ForeignKey(PaperInstrument, on_delete=models.PROTECT, related_name="orders")
    order_id = models.CharField(max_length=32, unique=True)
    tag = models.CharField(max_length=32, blank=True)
    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=Side.choices())
    order_type = models.CharField(max_length=8, choices=OrderType.choices())
    product = models.CharField(max_length=8, choices=Product.choices())
    validity = models.CharField(max_length=8, choices=Validity.choices(), default=Validity.DAY.value)
    variety = models.CharField(max_length=16, default="regular")
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(**PRICE, default=Decimal("0"))
    trigger_price = models.DecimalField(**PRICE, default=Decimal("0"))
    status = models.CharField(max_length=16, choices=OrderStatus.choices())
    status_message = models.CharField(max_length=255, blank=True)
    filled_quantity = models.PositiveIntegerField(default=0)
    average_price = models.DecimalField(**PRICE, default=Decimal("0"))
    modifications = models.PositiveSmallIntegerField(default=0)
    placed_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("placed_at", "id")
        indexes = [
            models.Index(fields=("account", "status"), name="paper_order_account_status"),
            models.Index(fields=("instrument", "status"), name="paper_order_instrument_status"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.side} {self.quantity} {self.exchange}:{self.tradingsymbol}"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == Side.BUY else -self.quantity

    def set_status(self, status: str, message: str = "") -> None:
        """Move to `status` if the transitions map allows it (does not save)."""
        if status not in ALLOWED_TRANSITIONS[self.status]:
            raise InvalidTransition(f"order {self.order_id}: {self.status} -> {status} is not allowed")
        self.status = status
        if message:
            self.status_message = message


class PaperTrade(FastLoadMixin, models.Model):
    """One fill of one order."""

    trade_id = models.CharField(max_length=40, unique=True)
    order = models.ForeignKey(PaperOrder, on_delete=models.CASCADE, related_name="trades")
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="trades")
    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    product = models.CharField(max_length=8, choices=Product.choices())
    side = models.CharField(max_length=4, choices=Side.choices())
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(**PRICE)
    filled_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("filled_at", "id")

    def __str__(self) -> str:
        return (
            f"{self.trade_id} {self.side} {self.quantity} {self.exchange}:{self.tradingsymbol} @ {self.price}"
        )


class PaperPosition(FastLoadMixin, models.Model):
    """Net position per (account, instrument, product); quantity is signed (short < 0)."""

    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="positions")
    instrument = models.ForeignKey(PaperInstrument, on_delete=models.PROTECT, related_name="positions")
    exchange = models.CharField(max_length=8)
    tradingsymbol = models.CharField(max_length=64)
    product = models.CharField(max_length=8, choices=Product.choices())
    quantity = models.IntegerField(default=0)
    average_price = models.DecimalField(**PRICE, default=Decimal("0"))
    realised_pnl = models.DecimalField(**MONEY, default=Decimal("0"))
    buy_quantity = models.PositiveIntegerField(default=0)
    buy_value = models.DecimalField(**MONEY, default=Decimal("0"))
    sell_quantity = models.PositiveIntegerField(default=0)
    sell_value = models.DecimalField(**MONEY, default=Decimal("0"))
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("exchange", "tradingsymbol", "product")
        constraints = [
            models.UniqueConstraint(
                fields=("account", "instrument", "product"), name="paper_position_unique_key"
            ),
        ]

    fields_on_fill: ClassVar[list[str]] = [
        "quantity",
        "average_price",
        "realised_pnl",
        "buy_quantity",
        "buy_value",
        "sell_quantity",
        "sell_value",
        "updated_at",
    ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol} {self.product} {self.quantity:+d}"
