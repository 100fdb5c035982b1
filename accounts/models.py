"""Linked broker accounts: credentials (encrypted), role, status, consent, capital and risk limits."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.crypto import GuardedEncryptedTextField, SealedSecret, reveal
from brokers.credentials import BrokerCredentials
from pms.fastload import FastLoadMixin

# Declared once, beside the sizing rules that read it; re-exported here for the model's users.
from replication.sizing.records import CapitalMode as CapitalMode


class Broker(models.TextChoices):
    KITE = "kite", "Zerodha Kite"
    ANGEL = "angel", "Angel One"
    DHAN = "dhan", "Dhan"
    ALICE = "alice", "Alice Blue"
    PAPER = "paper", "Paper exchange"


class Role(models.TextChoices):
    MASTER = "master", "Master"
    CHILD = "child", "Child"


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused (exits only)"
    HALTED = "halted", "Halted (nothing sent)"
    NEEDS_LOGIN = "needs_login", "Needs login"
    DISABLED = "disabled", "Disabled"


class Ownership(models.TextChoices):
    """Whose broker account this is, as far as the desk knows.

    A client who links an account through the API only claims its user id: the claim stays
    PENDING (never traded, never the master, never in the way of another claim of the same id)
    until the first successful broker login proves it (PROVEN). Staff links are VOUCHED for.
    """

    VOUCHED = "vouched", "Vouched for by staff"
    PENDING = "pending", "Pending: not yet proven by a broker login"
    PROVEN = "proven", "Proven by a broker login"


MARKET_AFTER_SECONDS_MAX = 6 * 60 * 60  # a trading session

# An account's risk limits (empty / null = no limit), declared once for the admin, the API and the
# services: instrument and product lists, then number limits.
RISK_LIST_FIELDS = ("allowed_instruments", "blocked_instruments", "allowed_products")
RISK_NUMBER_FIELDS = (
    "max_lots_per_order",
    "max_quantity",
    "max_order_value",
    "max_open_positions",
    "daily_loss_limit",
)
RISK_FIELDS = (*RISK_LIST_FIELDS, *RISK_NUMBER_FIELDS)


class PendingPolicy(models.TextChoices):
    """What happens to a child's still-open mirror of a master order that has filled (§3.5)."""

    LEAVE = "leave", "Leave it open"
    MARKET_AFTER_SECONDS = "market_after_seconds", "Convert it to MARKET after a delay"


class Account(FastLoadMixin, models.Model):
    """One linked broker account. Exactly one enabled master; every other enabled account is a child."""

    broker = models.CharField(max_length=16, choices=Broker.choices, default=Broker.PAPER)
    broker_user_id = models.CharField(max_length=64)
    display_name = models.CharField(max_length=120, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="broker_accounts",
    )

    # Credentials: encrypted at rest, write-only everywhere else.
    api_key = GuardedEncryptedTextField(blank=True, default="")
    api_secret = GuardedEncryptedTextField(blank=True, default="")
    access_token = GuardedEncryptedTextField(blank=True, default="")
    # Angel One's headless daily login (brokers.angel.session), where the client chose to store them.
    pin = GuardedEncryptedTextField(blank=True, default="")
    totp_secret = GuardedEncryptedTextField(blank=True, default="")
    token_obtained_at = models.DateTimeField(null=True, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    proxy_url = models.CharField(
        max_length=255, blank=True, help_text="HTTP proxy for this account's broker calls (static IP)."
    )

    role = models.CharField(max_length=8, choices=Role.choices, default=Role.CHILD)
    status = models.CharField(max_length=16, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)
    ownership = models.CharField(
        max_length=8,
        choices=Ownership.choices,
        default=Ownership.VOUCHED,
        help_text="A client's link is a pending claim until its first successful broker login proves "
        "the user id; pending accounts are never traded. Staff links are vouched for.",
    )
    ownership_proven_at = models.DateTimeField(null=True, blank=True)

    consent_given_at = models.DateTimeField(null=True, blank=True)
    consent_version = models.CharField(max_length=32, blank=True)

    capital_mode = models.CharField(max_length=16, choices=CapitalMode.choices(), default=CapitalMode.TOTAL)
    fixed_capital = models.DecimalField(
        max_digits=16, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))]
    )
    multiplier = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0.0001"))],
    )
    dry_run = models.BooleanField(default=False)
    pending_policy = models.CharField(
        max_length=24,
        choices=PendingPolicy.choices,
        default=PendingPolicy.LEAVE,
        help_text="A child's LIMIT/SL mirror still open after the master's order filled: leave it, "
        "or convert it to MARKET once market_after_seconds have passed since the fill was seen.",
    )
    market_after_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MaxValueValidator(MARKET_AFTER_SECONDS_MAX)],
        help_text="Seconds after the master's fill before an open mirror becomes MARKET "
        "(policy market_after_seconds only).",
    )

    # Risk limits (empty / null = no limit).
    allowed_instruments = models.JSONField(default=list, blank=True, help_text='["NFO:NIFTY25DECFUT", ...]')
    blocked_instruments = models.JSONField(default=list, blank=True)
    allowed_products = models.JSONField(default=list, blank=True, help_text='["NRML", "MIS"]')
    max_lots_per_order = models.PositiveIntegerField(null=True, blank=True)
    max_quantity = models.PositiveIntegerField(null=True, blank=True)
    max_order_value = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    max_open_positions = models.PositiveIntegerField(null=True, blank=True)
    daily_loss_limit = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)

    # Circuit breaker: consecutive failed order writes; tripped pauses entries.
    consecutive_failures = models.PositiveIntegerField(default=0)
    breaker_tripped_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("api_key", "api_secret", "access_token", "pin", "totp_secret")
    RISK_FIELDS: ClassVar[tuple[str, ...]] = RISK_FIELDS

    class Meta:
        ordering = ("id",)
        constraints = [
            # One account per broker user id, leaving pending claims aside: a claim never blocks the
            # real owner, and once one is proven or vouched for, the others are refused.
            models.UniqueConstraint(
                fields=("broker", "broker_user_id"),
                condition=~Q(ownership="pending"),
                name="account_unique_broker_user",
            ),
            models.UniqueConstraint(
                fields=("broker", "broker_user_id", "owner"),
                condition=Q(ownership="pending"),
                name="account_one_pending_claim_per_owner",
            ),
            models.CheckConstraint(
                condition=~(Q(ownership="pending") & Q(role="master")),
                name="account_pending_never_master",
                violation_error_message="An account not yet proven by a broker login cannot be the master.",
            ),
            models.UniqueConstraint(
                fields=("role",),
                condition=Q(role="master") & ~Q(status="disabled"),
                name="account_one_enabled_master",
                violation_error_message="There is already an enabled master account.",
            ),
            models.CheckConstraint(condition=Q(multiplier__gt=0), name="account_multiplier_positive"),
            models.CheckConstraint(
                condition=~Q(capital_mode="fixed")
                | (Q(fixed_capital__isnull=False) & Q(fixed_capital__gt=0)),
                name="account_fixed_capital_required",
                violation_error_message="Fixed capital mode needs a fixed capital above zero.",
            ),
        ]

    def __str__(self) -> str:
        label = self.display_name or self.broker_user_id
        return f"{label} ({self.broker}:{self.broker_user_id}, {self.role})"

    @property
    def is_master(self) -> bool:
        return self.role == Role.MASTER

    @property
    def is_pending(self) -> bool:
        """A client's claim not yet proven by a broker login: never traded, never the master."""
        return self.ownership == Ownership.PENDING

    @property
    def is_enabled(self) -> bool:
        return self.status != AccountStatus.DISABLED

    @property
    def has_consent(self) -> bool:
        return self.consent_given_at is not None

    @property
    def credentials_readable(self) -> bool:
        return not any(isinstance(getattr(self, f), SealedSecret) for f in self.SECRET_FIELDS)

    def broker_credentials(self) -> BrokerCredentials:
        """What the broker adapter needs to act for this account (plaintext: never log it).
        Raises CredentialDecryptError under a wrong key."""
        return BrokerCredentials(
            broker=self.broker,
            user_id=self.broker_user_id,
            api_key=self.secret("api_key"),
            access_token=self.secret("access_token"),
            proxy_url=self.proxy_url,
            pin=self.secret("pin"),
            totp_secret=self.secret("totp_secret"),
        )

    def secret(self, field_name: str) -> str:
        """Plaintext of one credential field; raises CredentialDecryptError if undecryptable."""
        if field_name not in self.SECRET_FIELDS:
            raise ValueError(f"{field_name} is not a credential field")
        return reveal(getattr(self, field_name), field_name=field_name)
