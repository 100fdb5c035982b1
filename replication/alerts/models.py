"""Alert subscriptions, the scanner's cursor, alerts (one per kind and account per window) and
their deliveries (one per recipient, retried with backoff, then given up)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account


class AlertKind(models.TextChoices):
    ORDER_REJECTED = "order_rejected", "Child order rejected"
    EXIT_OWED = "exit_owed", "Exit owed too long"
    LOGIN_MISSING = "login_missing", "Broker login missing"
    MAJOR_DRIFT = "major_drift", "Major drift"
    BREAKER_TRIPPED = "breaker_tripped", "Circuit breaker tripped"
    ENGINE_UNHEALTHY = "engine_unhealthy", "Lease lost or ticks failing"
    ENGINE_HALTED = "engine_halted", "Engine halted"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    TELEGRAM = "telegram", "Telegram"


class AlertSubscription(models.Model):
    """Who is told, how, and of what. Staff hear of every account and of the engine; anyone else
    only of the accounts they own (never of a pending claim, never of the engine)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_subscriptions"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(
        max_length=254,
        blank=True,
        help_text="Email: the address (blank: the user's own). Telegram: the chat id the bot writes to.",
    )
    kinds = models.JSONField(default=list, blank=True, help_text='e.g. ["order_rejected"]; empty: all kinds.')
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.user} by {self.channel} ({', '.join(self.kinds) or 'all kinds'})"

    def clean(self) -> None:
        unknown = sorted(set(self.kinds or []) - set(AlertKind.values))
        if unknown:
            raise ValidationError({"kinds": f"unknown alert kinds: {', '.join(unknown)}"})
        if self.channel == Channel.TELEGRAM and not self.address:
            raise ValidationError({"address": "A Telegram subscription needs the chat id."})

    def wants(self, kind: str) -> bool:
        return self.enabled and (not self.kinds or kind in self.kinds)

    def destination(self) -> str:
        """Where the channel sends: the address, or for email the user's own address."""
        return self.address or (str(self.user.email) if self.channel == Channel.EMAIL else "")


class AlertCursor(models.Model):
    """How far the scanner has read: the last audit row and the last finished tick it has seen."""

    name = models.CharField(max_length=40, unique=True, default="scanner")
    last_event_id = models.BigIntegerField(default=0)
    last_tick_id = models.BigIntegerField(default=0)
    scanned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: event {self.last_event_id}, tick {self.last_tick_id}"


class Alert(models.Model):
    """One message per (kind, scope) per window: later facts of the same kind and scope inside the
    window are counted as suppressed and summed up in one message when the window closes."""

    kind = models.CharField(max_length=24, choices=AlertKind.choices)
    scope = models.CharField(max_length=40, help_text='"account:<id>" or "engine".')
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    opened_at = models.DateTimeField(default=timezone.now)
    closes_at = models.DateTimeField(db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    subject = models.CharField(max_length=200)
    message = models.TextField()
    source_event_id = models.BigIntegerField(null=True, blank=True, help_text="The audit row that raised it.")
    suppressed = models.PositiveIntegerField(default=0)
    suppressed_notes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-opened_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("kind", "scope"), condition=Q(closed_at__isnull=True), name="alert_one_open_window"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.scope} {self.opened_at:%Y-%m-%d %H:%M:%S}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    GAVE_UP = "gave_up", "Given up"


class AlertDelivery(models.Model):
    """One message of one alert (or of its window's summary) to one subscription's destination."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    subscription = models.ForeignKey(
        AlertSubscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    summary = models.BooleanField(default=False, help_text="The window's summary of suppressed alerts.")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=254)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=("alert", "subscription", "summary"), name="alert_delivery_once"),
        ]

    def __str__(self) -> str:
        what = "summary" if self.summary else "alert"
        return f"{what} {self.alert_id} by {self.channel}: {self.status}"
