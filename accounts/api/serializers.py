"""Input and output serializers of the accounts API.

Input serializers check *types* only (text is text, flags are true/false, numbers parse) and refuse
unknown keys; every domain rule (formats, ranges, capital mode, master uniqueness) is the account
services' job, so the API, the admin and the commands refuse the same things with the same messages.
Output serializers never carry a credential: only whether one is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.selectors import account_funds
from accounts.models import (
    MARKET_AFTER_SECONDS_MAX,
    Account,
    AccountStatus,
    Broker,
    CapitalMode,
    Ownership,
    PendingPolicy,
    Role,
)
from accounts.validation import redact_url
from brokers.capabilities import capabilities_for

INSTRUMENTS_HELP = (
    'One contract ("NFO:NIFTY25DECFUT") or an underlying ("NFO:NIFTY", or "NIFTY" on any exchange: '
    "every future and option on it)"
)


PIN_HELP = (
    "Angel One only; write-only, stored encrypted, never shown: the client's PIN (4 to 8 digits). With "
    "`api_key` and `totp_secret` the link logs in once at Angel One before storing anything (a refusal "
    "is 400 `login_refused`) and the server logs in by itself every day."
)
TOTP_HELP = (
    "Angel One only; write-only, stored encrypted, never shown: the TOTP secret (base32) the client "
    "enabled for SmartAPI, from which the server computes each login's code."
)


class StrictCharField(serializers.CharField):
    """Text only: numbers, booleans, lists and objects are refused (DRF would stringify numbers).

    Blank text passes through untrimmed; the services strip and judge it.
    """

    default_error_messages = {"invalid_type": "Must be text."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid_type")
        return str(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only (DRF would also take "yes", "1", 1 ...)."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class NumberField(serializers.DecimalField):
    """A decimal number, as a JSON string ("1.5") or number; range and places are the services' rules."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=None, decimal_places=None, **kwargs)


class InputSerializer(serializers.Serializer[Any]):
    """Refuses keys it does not declare (deny by default: a typo is an error, not a silent no-op)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {
                        key: [serializers.ErrorDetail("Unknown field.", code="unknown_field")]
                        for key in unknown
                    }
                )
        return super().to_internal_value(data)


# --- inputs ---------------------------------------------------------------------------------------


class TokenObtainInput(InputSerializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=4096, write_only=True, style={"input_type": "password"})


class AccountLinkInput(InputSerializer):
    broker = StrictCharField(help_text=f"One of: {', '.join(Broker.values)}.")
    user_id = StrictCharField(
        help_text="The broker's client id (Kite ids and Angel One client codes are upper-cased)."
    )
    name = StrictCharField(required=False, allow_null=True)
    api_key = StrictCharField(
        required=False,
        allow_null=True,
        write_only=True,
        help_text="Kite and Angel One (the SmartAPI key); write-only.",
    )
    api_secret = StrictCharField(required=False, allow_null=True, write_only=True, help_text="Kite only.")
    access_token = StrictCharField(
        required=False,
        allow_null=True,
        write_only=True,
        help_text="Kite: usually stored by the login redirect instead. Angel One: a session token, "
        "when no PIN and TOTP secret are given.",
    )
    pin = StrictCharField(required=False, allow_null=True, write_only=True, help_text=PIN_HELP)
    totp_secret = StrictCharField(required=False, allow_null=True, write_only=True, help_text=TOTP_HELP)
    master = StrictBooleanField(required=False, help_text="Staff only; refused when a master exists.")
    capital_mode = StrictCharField(
        required=False, allow_null=True, help_text=f"One of: {', '.join(mode.value for mode in CapitalMode)}."
    )
    fixed_capital = NumberField(required=False, allow_null=True, help_text="Rupees; fixed mode only.")
    multiplier = NumberField(required=False, allow_null=True)
    consent = StrictBooleanField(required=False)
    owner = StrictCharField(
        required=False,
        allow_null=True,
        help_text="Username of the owner. Staff only; clients own what they link.",
    )


class AccountSettingsInput(InputSerializer):
    """Every key is optional; null clears a limit, a list, the name or the proxy."""

    display_name = StrictCharField(required=False, allow_null=True)
    capital_mode = StrictCharField(
        required=False, allow_null=True, help_text=f"One of: {', '.join(mode.value for mode in CapitalMode)}."
    )
    fixed_capital = NumberField(required=False, allow_null=True)
    multiplier = NumberField(required=False, allow_null=True)
    dry_run = StrictBooleanField(required=False, allow_null=True)
    pending_policy = StrictCharField(
        required=False,
        allow_null=True,
        help_text="A child order still open after the master's order filled: `leave` it, or convert it "
        f"to MARKET after `market_after_seconds`. One of: {', '.join(PendingPolicy.values)}.",
    )
    market_after_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text=f"Whole seconds, 0 to {MARKET_AFTER_SECONDS_MAX}; used by `market_after_seconds` only.",
    )
    allowed_instruments = serializers.ListField(
        child=StrictCharField(), required=False, allow_null=True, help_text=INSTRUMENTS_HELP
    )
    blocked_instruments = serializers.ListField(
        child=StrictCharField(), required=False, allow_null=True, help_text=INSTRUMENTS_HELP
    )
    allowed_products = serializers.ListField(
        child=StrictCharField(), required=False, allow_null=True, help_text='["NRML", "MIS", "CNC", "MTF"]'
    )
    max_lots_per_order = serializers.IntegerField(required=False, allow_null=True)
    max_quantity = serializers.IntegerField(required=False, allow_null=True)
    max_order_value = NumberField(required=False, allow_null=True)
    max_open_positions = serializers.IntegerField(required=False, allow_null=True)
    daily_loss_limit = NumberField(required=False, allow_null=True)
    proxy_url = StrictCharField(required=False, allow_null=True, write_only=True, help_text="Staff only.")
    owner = StrictCharField(required=False, allow_null=True, help_text="Username. Staff only.")
    status = StrictCharField(
        required=False,
        help_text="Pause (`paused`), halt (`halted`) or resume (`active`); `disabled` and `needs_login` are "
        "staff only.",
    )
    reason = StrictCharField(required=False, help_text="Recorded with a status change.")
    force = StrictBooleanField(
        required=False,
        help_text="Staff only, with `status: disabled` and a `reason`: disable although the engine holds "
        "positions or pending orders there (refused with 409 `positions_held` otherwise).",
    )
    api_key = StrictCharField(required=False, write_only=True, help_text="Kite only; write-only.")
    api_secret = StrictCharField(required=False, write_only=True, help_text="Kite only; write-only.")
    access_token = StrictCharField(
        required=False, write_only=True, help_text='Write-only; "" forgets the session.'
    )
    pin = StrictCharField(
        required=False, write_only=True, help_text="Angel One only; write-only (not checked by a login here)."
    )
    totp_secret = StrictCharField(
        required=False, write_only=True, help_text="Angel One only; write-only (base32)."
    )


class ConsentInput(InputSerializer):
    version = StrictCharField(required=False, help_text="Terms version; defaults to the current terms.")


class UnlinkQuery(serializers.Serializer[Any]):
    force = serializers.BooleanField(
        required=False, default=False, help_text="Staff only: unlink although the engine holds positions."
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


# --- outputs --------------------------------------------------------------------------------------


class ErrorOutput(serializers.Serializer[Any]):
    code = serializers.CharField()
    message = serializers.CharField()
    # DRF's metaclass moves declared fields into _declared_fields, so this does not shadow .fields.
    fields = serializers.DictField(child=serializers.CharField())  # type: ignore[assignment]


class TokenOutput(serializers.Serializer[Any]):
    token = serializers.CharField(help_text="The secret: shown only now, never again.")
    id = serializers.CharField(help_text="The token's id in GET /api/v1/auth/tokens (not a secret).")
    expiry = serializers.DateTimeField(help_text="When the token stops working.")


def _rupees(help_text: str) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=18, decimal_places=2, read_only=True, allow_null=True, help_text=help_text
    )


class CapitalOutput(serializers.Serializer[Any]):
    sizing = _rupees(
        "The capital C that sizes this account's orders (target = fraction × C × multiplier): "
        "the fixed amount in `fixed` mode, else from the latest margin snapshot (`total`: used + "
        "available, `available`: available). null: not read yet.",
    )
    # Text, not a second enum of the same choices (the schema names each choice set once: the
    # account's `capital_mode`).
    mode = serializers.CharField(
        read_only=True,
        help_text=f"The account's capital mode: {', '.join(mode.value for mode in CapitalMode)}.",
    )


class MarginOutput(serializers.Serializer[Any]):
    used = _rupees("Used margin (Kite `utilised.debits`).")
    available = _rupees("Available margin (Kite `net`).")
    as_of = serializers.DateTimeField(read_only=True, allow_null=True, help_text="The snapshot's time.")


class AccountOutput(serializers.ModelSerializer[Account]):
    """An account as the API shows it: settings, state, and only *whether* credentials are stored."""

    broker = serializers.ChoiceField(choices=Broker.choices, read_only=True)
    role = serializers.ChoiceField(choices=Role.choices, read_only=True)
    status = serializers.ChoiceField(choices=AccountStatus.choices, read_only=True)
    ownership = serializers.ChoiceField(
        choices=Ownership.choices,
        read_only=True,
        help_text="`pending`: a client's claim, never traded until its first successful broker login "
        "proves the user id (`proven`); staff links are `vouched`.",
    )
    capital_mode = serializers.ChoiceField(choices=CapitalMode.choices(), read_only=True)
    pending_policy = serializers.ChoiceField(choices=PendingPolicy.choices, read_only=True)
    owner: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    allowed_instruments = serializers.ListField(child=serializers.CharField(), read_only=True)
    blocked_instruments = serializers.ListField(child=serializers.CharField(), read_only=True)
    allowed_products = serializers.ListField(child=serializers.CharField(), read_only=True)
    has_consent = serializers.BooleanField(read_only=True)
    has_api_key = serializers.SerializerMethodField()
    has_api_secret = serializers.SerializerMethodField()
    has_access_token = serializers.SerializerMethodField()
    has_pin = serializers.SerializerMethodField()
    has_totp_secret = serializers.SerializerMethodField()
    login_required = serializers.SerializerMethodField()
    proxy_url = serializers.SerializerMethodField()
    capital = serializers.SerializerMethodField()
    margin = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = (
            "id",
            "broker",
            "broker_user_id",
            "display_name",
            "owner",
            "role",
            "status",
            "ownership",
            "ownership_proven_at",
            "has_consent",
            "consent_given_at",
            "consent_version",
            "capital_mode",
            "fixed_capital",
            "multiplier",
            "capital",
            "margin",
            "dry_run",
            "pending_policy",
            "market_after_seconds",
            *Account.RISK_FIELDS,
            "has_api_key",
            "has_api_secret",
            "has_access_token",
            "has_pin",
            "has_totp_secret",
            "token_obtained_at",
            "token_expires_at",
            "login_required",
            "proxy_url",
            "consecutive_failures",
            "breaker_tripped_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_api_key(self, account: Account) -> bool:
        return bool(account.api_key)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_api_secret(self, account: Account) -> bool:
        return bool(account.api_secret)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_access_token(self, account: Account) -> bool:
        return bool(account.access_token)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_pin(self, account: Account) -> bool:
        """Whether a PIN for the server's own daily login (Angel One) is stored; never the PIN."""
        return bool(account.pin)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_has_totp_secret(self, account: Account) -> bool:
        """Whether a TOTP secret for the server's own daily login (Angel One) is stored."""
        return bool(account.totp_secret)

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_login_required(self, account: Account) -> bool:
        return login_required(account)

    @extend_schema_field(CapitalOutput)
    def get_capital(self, account: Account) -> dict[str, Any]:
        funds = account_funds(account)
        return dict(CapitalOutput({"sizing": funds.sizing_capital, "mode": funds.capital_mode}).data)

    @extend_schema_field(MarginOutput)
    def get_margin(self, account: Account) -> dict[str, Any]:
        funds = account_funds(account)
        body = {"used": funds.used_margin, "available": funds.available_margin, "as_of": funds.as_of}
        return dict(MarginOutput(body).data)

    @extend_schema_field(OpenApiTypes.STR)
    def get_proxy_url(self, account: Account) -> str:
        """The proxy URL with any password replaced by ***."""
        return redact_url(account.proxy_url)


def login_required(account: Account) -> bool:
    """An account whose broker's login is interactive (a person logs in through the broker's page:
    Kite's daily redirect) without a live access token must log in before it can trade. A
    headless login (Angel One) is the server's, and a paper account has no session."""
    if not capabilities_for(account.broker).session.interactive:
        return False
    if not account.access_token:
        return True
    return account.token_expires_at is not None and account.token_expires_at <= timezone.now()


class AccountLinkOutput(serializers.Serializer[Any]):
    account = AccountOutput()
    created = serializers.BooleanField()
    login_url = serializers.CharField(
        allow_null=True,
        help_text="A broker with an interactive login (Kite) without a live token, or a pending claim "
        "there: where the client logs in next (the first login proves the claim).",
    )
