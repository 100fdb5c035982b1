"""Django discovers the brokers app's models here: the paper exchange's (`brokers.paper.models`)
and the vendor-neutral tables every broker shares: freeze quantities staff keep, and each broker's
instrument master as loaded for the day (`brokers.freeze`, `brokers.instruments`)."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from brokers.paper.models import PaperAccount, PaperInstrument, PaperOrder, PaperPosition, PaperTrade
from brokers.types import InstrumentType


class FreezeQuantity(models.Model):
    """The largest quantity one order may carry for an underlying's derivatives (the exchange's
    quantity freeze limit). Staff keep it in the admin; seeded from the exchange's published limits.
    A broker that publishes its own figure in its instrument master wins over this table."""

    underlying = models.CharField(max_length=64, unique=True, help_text="NSE-style name, e.g. NIFTY.")
    exchange = models.CharField(max_length=8, blank=True, help_text="NFO or BFO (for reference).")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    source = models.CharField(max_length=200, blank=True, help_text="Where the figure comes from.")
    effective_from = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("underlying",)
        verbose_name_plural = "freeze quantities"

    def __str__(self) -> str:
        return f"{self.underlying}: {self.quantity}"

    def save(self, *args: object, **kwargs: object) -> None:
        self.underlying = self.underlying.strip().upper()
        self.exchange = self.exchange.strip().upper()
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class BrokerInstrument(models.Model):
    """One instrument as one broker lists it today: the neutral identity (exchange, NSE-style
    symbol, underlying, type, expiry, strike, lot size) and the broker's own token and symbol."""

    broker = models.CharField(max_length=16)
    exchange = models.CharField(max_length=8)
    symbol = models.CharField(max_length=64, help_text="NSE-style trading symbol (the neutral name).")
    underlying = models.CharField(max_length=64, blank=True)
    instrument_type = models.CharField(max_length=8, choices=InstrumentType.choices())
    expiry = models.DateField(null=True, blank=True)
    strike = models.DecimalField(max_digits=14, decimal_places=4, default=Decimal("0"))
    lot_size = models.PositiveIntegerField(default=1)
    tick_size = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal("0.05"))
    freeze_quantity = models.PositiveIntegerField(null=True, blank=True)
    broker_token = models.CharField(max_length=64, blank=True, help_text="The broker's own id for it.")
    broker_symbol = models.CharField(max_length=64, blank=True, help_text="The broker's own symbol.")
    trading_day = models.DateField(help_text="The IST trading day of the master this row came from.")
    loaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("broker", "exchange", "symbol")
        constraints = [
            models.UniqueConstraint(fields=("broker", "exchange", "symbol"), name="broker_instrument_unique"),
        ]
        indexes = [models.Index(fields=("broker", "underlying"), name="broker_instr_underlying")]

    def __str__(self) -> str:
        return f"{self.broker} {self.exchange}:{self.symbol}"


__all__ = [
    "BrokerInstrument",
    "FreezeQuantity",
    "PaperAccount",
    "PaperInstrument",
    "PaperOrder",
    "PaperPosition",
    "PaperTrade",
]
