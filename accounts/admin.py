"""Account wiring in the Django admin. Every write goes through accounts.services (audited).

Credentials are write-only: blank password inputs keep the stored value, and no page renders a
credential or its ciphertext (the model fields are excluded from the form; the changelist defers them).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Length
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.api.selectors import sizing_capital
from accounts.crypto import CredentialDecryptError, SealedSecret
from accounts.models import Account, AccountStatus, Broker, CapitalMode, Ownership
from accounts.selectors import account_get_master
from accounts.services import (
    SETTING_NAMES,
    AccountError,
    account_broker_client,
    account_give_consent,
    account_link,
    account_link_validate,
    account_promote_master,
    account_refresh_margins,
    account_set_credentials,
    account_set_status,
    account_settings_validate,
    account_update_settings,
    consent_version_current,
)
from accounts.services._common import check_headless_fields
from accounts.services.linking import account_claim_vouch
from accounts.validation import (
    Errors,
    clean_access_token,
    clean_api_key,
    clean_api_secret,
    clean_pin,
    clean_totp_secret,
    redact_url,
    unredact_url,
)
from brokers.errors import BrokerError
from brokers.registry import UnknownBroker
from pms.money import rupees
from replication.models import MarginSnapshot

logger = logging.getLogger(__name__)

SECRET_FIELDS = Account.SECRET_FIELDS
# account_link arguments handled on the add page; the other settings go to account_update_settings.
LINK_SETTINGS = ("display_name", "owner", "capital_mode", "fixed_capital", "multiplier")
# Service input names -> form field names, for showing AccountError.fields on the right input.
FORM_FIELD_FOR = {"name": "display_name", "user_id": "broker_user_id", "master": "make_master"}
ADD_ONLY = ("make_master", "give_consent")
RISK_FIELDS = Account.RISK_FIELDS
PENDING_FIELDS = ("pending_policy", "market_after_seconds")
CREDENTIAL_CLEANERS = {
    "api_key": clean_api_key,
    "api_secret": clean_api_secret,
    "access_token": clean_access_token,
    "pin": clean_pin,
    "totp_secret": clean_totp_secret,
}
PROMOTE_TEMPLATE = "admin/accounts/account/promote_master_confirmation.html"


def _secret_input(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored value.",
    )


def _link_arguments(cleaned: dict[str, Any]) -> dict[str, Any]:
    """The add form's fields as `account_link` arguments (validation and saving use the same)."""
    return {
        "broker": cleaned.get("broker"),
        "user_id": cleaned.get("broker_user_id"),
        "name": cleaned.get("display_name"),
        "api_key": cleaned.get("api_key") or None,
        "api_secret": cleaned.get("api_secret") or None,
        "access_token": cleaned.get("access_token") or None,
        "pin": cleaned.get("pin") or None,
        "totp_secret": cleaned.get("totp_secret") or None,
        "master": cleaned.get("make_master", False),
        "capital_mode": cleaned.get("capital_mode"),
        "fixed_capital": cleaned.get("fixed_capital"),
        "multiplier": cleaned.get("multiplier"),
        "consent": cleaned.get("give_consent", False),
        "owner": cleaned.get("owner"),
    }


class AccountAdminForm(forms.ModelForm):
    api_key = _secret_input("API key")
    api_secret = _secret_input("API secret")
    access_token = _secret_input("Access token")
    pin = _secret_input("PIN (Angel One)")
    totp_secret = _secret_input("TOTP secret (Angel One)")
    make_master = forms.BooleanField(
        label="Master",
        required=False,
        help_text="Only when no master is enabled yet; otherwise link as a child and promote it.",
    )
    give_consent = forms.BooleanField(
        label="Record consent now",
        required=False,
        help_text="The client has agreed to replication under the current terms.",
    )

    class Meta:
        model = Account
        # Credentials are not model-bound: no initial value is ever rendered and the form never writes
        # them; the declared inputs above go to account_set_credentials when filled in.
        fields = (
            "broker",
            "broker_user_id",
            "display_name",
            "owner",
            "proxy_url",
            "capital_mode",
            "fixed_capital",
            "multiplier",
            "dry_run",
            *PENDING_FIELDS,
            *RISK_FIELDS,
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            self.initial.pop(name, None)
        if self.instance.pk is not None and self.instance.proxy_url:
            # The proxy's password is shown as *** (as the API shows it); see clean_proxy_url.
            self.initial["proxy_url"] = redact_url(self.instance.proxy_url)
        if "give_consent" in self.fields:
            self.fields["give_consent"].label = f"Record consent now (terms {consent_version_current()})"

    def clean_proxy_url(self) -> str:
        """The masked password sent back untouched stands for the stored one."""
        submitted: str = self.cleaned_data.get("proxy_url") or ""
        if self.instance.pk is None:
            return submitted
        return unredact_url(submitted, stored=self.instance.proxy_url)

    def clean_broker_user_id(self) -> str:
        user_id: str = self.cleaned_data["broker_user_id"]
        if self.cleaned_data.get("broker") in (Broker.KITE, Broker.ANGEL):
            return user_id.strip().upper()  # as account_link stores it, so the unique check sees it
        return user_id.strip()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            if self.instance.pk is None:
                self._validate_add(cleaned)
            else:
                self._validate_change(cleaned)
        except AccountError as exc:
            self._show(exc)
        return cleaned

    def _validate_add(self, cleaned: dict[str, Any]) -> None:
        account_link_validate(**_link_arguments(cleaned))
        account_settings_validate(account=None, **_settings_from(cleaned, SETTING_NAMES))

    def _validate_change(self, cleaned: dict[str, Any]) -> None:
        changed = _settings_from(cleaned, set(self.changed_data) & SETTING_NAMES)
        account_settings_validate(account=self.instance, **changed)
        errors = Errors()
        given = {name: cleaned.get(name) or None for name in CREDENTIAL_CLEANERS}
        for name, clean in CREDENTIAL_CLEANERS.items():
            if given[name]:
                if self.instance.broker == Broker.PAPER:
                    raise AccountError("credentials_not_allowed", "paper accounts take no credentials", {})
                errors.run(name, clean, given[name])
        check_headless_fields(self.instance.broker, given, errors)
        errors.raise_if_any()

    def _show(self, exc: AccountError) -> None:
        if not exc.fields:
            self.add_error(None, exc.message)
        for name, message in exc.fields.items():
            field = FORM_FIELD_FOR.get(name, name)
            self.add_error(field if field in self.fields else None, message)


def _settings_from(cleaned: dict[str, Any], names: Any) -> dict[str, Any]:
    return {name: cleaned[name] for name in names if name in cleaned}


def _rupees(value: Decimal | None) -> str:
    """Rupees with Indian digit grouping: ₹12,34,567.89."""
    return "—" if value is None else rupees(value)


def _short(moment: datetime) -> str:
    """A time in a list column: `03 Dec 14:05` (DISPLAY_TIME_ZONE)."""
    return moment.astimezone(ZoneInfo(settings.DISPLAY_TIME_ZONE)).strftime("%d %b %H:%M")


def _local(moment: datetime) -> str:
    """A time as staff read it (DISPLAY_TIME_ZONE, Asia/Kolkata by default)."""
    zone = ZoneInfo(settings.DISPLAY_TIME_ZONE)
    return moment.astimezone(zone).strftime("%d %b %Y %H:%M %Z")


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountAdminForm
    exclude = SECRET_FIELDS
    # Short columns that fit a laptop screen (1366 px): who, what state, the capital that sizes it,
    # the latest margins, the broker session, consent. The full figures are on the change page.
    list_display = ("account", "role_status", "sizing_capital", "margins", "login_state", "consent")
    list_display_links = ("account",)
    list_filter = ("broker", "role", "status", "ownership", "capital_mode")
    search_fields = ("broker_user_id", "display_name")
    list_per_page = 100
    actions = (
        "pause_accounts",
        "resume_accounts",
        "halt_accounts",
        "disable_accounts",
        "promote_to_master",
        "vouch_for_claims",
        "verify_credentials",
        "refresh_margins",
    )
    _add_fieldsets = (
        (
            None,
            {"fields": ("broker", "broker_user_id", "display_name", "owner", *ADD_ONLY)},
        ),
        (
            "Credentials (write-only; Kite: key and secret; Angel One: key, PIN and TOTP secret)",
            {"fields": ("api_key", "api_secret", "access_token", "pin", "totp_secret", "proxy_url")},
        ),
        ("Capital", {"fields": ("capital_mode", "fixed_capital", "multiplier", "dry_run")}),
        (
            "Pending orders",
            {
                "fields": PENDING_FIELDS,
                "description": "A child order still open after the master's order filled (DESIGN §3.5).",
            },
        ),
        (
            "Risk limits (empty = no limit)",
            {"fields": RISK_FIELDS},
        ),
    )
    _change_readonly = (
        "broker",
        "broker_user_id",
        "role",
        "status",
        "ownership",
        "ownership_proven_at",
        "consent_given_at",
        "consent_version",
        "credentials_state",
        "token_obtained_at",
        "token_expires_at",
        "consecutive_failures",
        "breaker_tripped_at",
        "latest_snapshot",
        "created_at",
        "updated_at",
    )

    # --- pages --------------------------------------------------------------------------------

    def get_queryset(self, request):
        latest = MarginSnapshot.objects.filter(account=OuterRef("pk")).order_by("-taken_at", "-id")
        return (
            super()
            .get_queryset(request)
            .defer(*SECRET_FIELDS)  # the list never decrypts a credential
            .annotate(
                snap_used=Subquery(latest.values("used_margin")[:1]),
                snap_available=Subquery(latest.values("available_margin")[:1]),
                snap_capital=Subquery(latest.values("capital")[:1]),
                snap_taken_at=Subquery(latest.values("taken_at")[:1]),
                token_length=Length("access_token"),
            )
        )

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self._add_fieldsets
        identity = ("broker", "broker_user_id", "display_name", "owner", "role", "status")
        ownership = ("ownership", "ownership_proven_at")
        consent = ("consent_given_at", "consent_version", "give_consent")
        credentials = ("credentials_state", "api_key", "api_secret", "access_token", "pin", "totp_secret")
        sessions = ("token_obtained_at", "token_expires_at", "proxy_url")
        fieldsets = [(None, {"fields": identity + ownership}), ("Consent", {"fields": consent})]
        if obj.broker != Broker.PAPER:
            fieldsets.append(("Credentials (write-only)", {"fields": credentials + sessions}))
        fieldsets.extend(self._add_fieldsets[2:])
        health = ("consecutive_failures", "breaker_tripped_at", "latest_snapshot", "created_at", "updated_at")
        fieldsets.append(("Health", {"fields": health}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self._change_readonly

    def has_delete_permission(self, request, obj=None):
        return False  # accounts are disabled, never deleted: their orders and audit rows stay linked

    def save_model(self, request, obj, form, change):
        actor = request.user.get_username()
        data = form.cleaned_data
        if change:
            account = Account.objects.get(pk=obj.pk)
            changed = _settings_from(data, set(form.changed_data) & SETTING_NAMES)
            if changed:
                account_update_settings(account=account, actor=actor, **changed)
            credentials = {name: data[name] for name in SECRET_FIELDS if data.get(name)}
            if credentials:
                account_set_credentials(account=account, actor=actor, **credentials)
            if data.get("give_consent"):
                account_give_consent(account=account, version=consent_version_current(), actor=actor)
        else:
            # The admin saves inside Django's transaction, where no broker is called: an Angel
            # One PIN and TOTP secret are checked by the server's first login (the 08:45 check).
            account, _ = account_link(**_link_arguments(data), actor=actor, check_login=False)
            rest = _settings_from(data, SETTING_NAMES - set(LINK_SETTINGS))
            account_update_settings(account=account, actor=actor, **rest)
            obj.pk = account.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # Account has no many-to-many fields or inlines; the services saved everything

    # --- columns ------------------------------------------------------------------------------

    @admin.display(description="account", ordering="display_name")
    def account(self, obj):
        return format_html(
            '{}<br><span class="quiet">{}:{} · #{}</span>',
            obj.display_name or obj.broker_user_id,
            obj.broker,
            obj.broker_user_id,
            obj.pk,
        )

    @admin.display(description="role · status", ordering="status")
    def role_status(self, obj):
        pending = " · pending proof" if obj.ownership == Ownership.PENDING else ""
        return f"{obj.role} · {obj.get_status_display()}{pending}"

    @admin.display(description="sizing capital")
    def sizing_capital(self, obj):
        capital = sizing_capital(
            mode=obj.capital_mode,
            fixed=obj.fixed_capital,
            used=getattr(obj, "snap_used", None),
            available=getattr(obj, "snap_available", None),
        )
        mode = CapitalMode(obj.capital_mode).value
        multiplier = "" if obj.multiplier == 1 else f" × {obj.multiplier.normalize()}"
        return format_html('{}<br><span class="quiet">{}{}</span>', _rupees(capital), mode, multiplier)

    @admin.display(description="margins", ordering="snap_used")
    def margins(self, obj):
        taken_at = getattr(obj, "snap_taken_at", None)
        if taken_at is None:
            return "—"
        return format_html(
            'used {}<br>available {}<br><span class="quiet">{}</span>',
            _rupees(getattr(obj, "snap_used", None)),
            _rupees(getattr(obj, "snap_available", None)),
            _short(taken_at),
        )

    @admin.display(description="login")
    def login_state(self, obj):
        if obj.broker == Broker.PAPER:
            return "n/a (paper)"
        if obj.status == AccountStatus.NEEDS_LOGIN:
            return "needs login"
        if not getattr(obj, "token_length", 0):
            return "no token"
        if obj.token_expires_at is None:
            return "token (expiry unknown)"
        if obj.token_expires_at <= timezone.now():
            return f"expired {_short(obj.token_expires_at)}"
        return f"until {_short(obj.token_expires_at)}"

    @admin.display(description="consent", boolean=True, ordering="consent_given_at")
    def consent(self, obj):
        return obj.has_consent

    @admin.display(description="credentials")
    def credentials_state(self, obj):
        def state(name):
            value = getattr(obj, name)
            if isinstance(value, SealedSecret):
                return "cannot be decrypted with the configured key"
            return "set" if value else "not set"

        return format_html_join(", ", "{}: {}", ((name, state(name)) for name in SECRET_FIELDS))

    @admin.display(description="latest margins")
    def latest_snapshot(self, obj):
        snapshot = obj.snapshots.order_by("-taken_at", "-id").first()
        if snapshot is None:
            return "—"
        return format_html(
            "used {} · available {} · capital {} at {}",
            _rupees(snapshot.used_margin),
            _rupees(snapshot.available_margin),
            _rupees(snapshot.capital),
            _local(snapshot.taken_at),
        )

    # --- actions ------------------------------------------------------------------------------

    def _set_status(self, request, queryset, status, done_label):
        actor = request.user.get_username()
        done = 0
        for account in queryset:
            try:
                account_set_status(account=account, status=status, actor=actor, reason="admin action")
            except AccountError as exc:
                self.message_user(request, f"{account}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done_label} {done} account(s).", messages.SUCCESS)

    @admin.action(description="Pause entries (exits continue)", permissions=["change"])
    def pause_accounts(self, request, queryset):
        self._set_status(request, queryset, AccountStatus.PAUSED, "Paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume_accounts(self, request, queryset):
        self._set_status(request, queryset, AccountStatus.ACTIVE, "Resumed")

    @admin.action(description="Halt (send nothing)", permissions=["change"])
    def halt_accounts(self, request, queryset):
        self._set_status(request, queryset, AccountStatus.HALTED, "Halted")

    @admin.action(description="Disable", permissions=["change"])
    def disable_accounts(self, request, queryset):
        self._set_status(request, queryset, AccountStatus.DISABLED, "Disabled")

    @admin.action(description="Promote to master…", permissions=["change"])
    def promote_to_master(self, request, queryset):
        accounts = list(queryset[:2])
        if len(accounts) != 1:
            self.message_user(request, "Select exactly one account to promote.", messages.ERROR)
            return None
        account = accounts[0]
        if account.is_pending:
            message = f"{account}: not yet proven by a broker login; a pending claim cannot be the master."
            self.message_user(request, message, messages.ERROR)
            return None
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Promote to master?",
                "account": account,
                "current_master": account_get_master(),
                "opts": self.model._meta,
                "action_name": "promote_to_master",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, PROMOTE_TEMPLATE, context)
        try:
            account_promote_master(account=account, actor=request.user.get_username())
        except AccountError as exc:
            self.message_user(request, f"{account}: {exc.message}", messages.ERROR)
        else:
            self.message_user(request, f"{account} is now the master.", messages.SUCCESS)
        return None

    @admin.action(description="Vouch for pending claims (staff proof of ownership)", permissions=["change"])
    def vouch_for_claims(self, request, queryset):
        """A paper claim has no broker login to prove it: staff who know the owner vouch for it."""
        actor = request.user.get_username()
        done = 0
        for account in queryset.filter(ownership=Ownership.PENDING):
            try:
                account_claim_vouch(account=account, actor=actor)
            except AccountError as exc:
                self.message_user(request, f"{account}: {exc.message}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"Vouched for {done} pending claim(s).", messages.SUCCESS)

    @admin.action(description="Verify credentials (read funds)", permissions=["change"])
    def verify_credentials(self, request, queryset):
        for account in queryset:
            try:
                funds = account_broker_client(account=account).funds()
            except (BrokerError, CredentialDecryptError, UnknownBroker) as exc:
                self.message_user(request, f"{account}: {_broker_problem(exc)}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"{account}: credentials work; used {_rupees(funds.used)}, "
                    f"available {_rupees(funds.available)}",
                    messages.SUCCESS,
                )

    @admin.action(description="Refresh margins (store a snapshot)", permissions=["change"])
    def refresh_margins(self, request, queryset):
        for account in queryset:
            try:
                snapshot = account_refresh_margins(account=account)
            except (BrokerError, CredentialDecryptError, UnknownBroker) as exc:
                self.message_user(request, f"{account}: {_broker_problem(exc)}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"{account}: used {_rupees(snapshot.used_margin)}, available "
                    f"{_rupees(snapshot.available_margin)}, capital {_rupees(snapshot.capital)}",
                    messages.SUCCESS,
                )


def _broker_problem(exc: Exception) -> str:
    """What staff see when a broker call fails (no traceback, no credential)."""
    if isinstance(exc, BrokerError):
        logger.warning("broker call from the admin failed: %s", exc.code)
        hint = " (log in to Kite again)" if exc.code == "token_expired" else ""
        return f"{exc.code}: {exc.message}{hint}"
    return str(exc)
