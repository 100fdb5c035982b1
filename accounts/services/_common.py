"""Helpers shared by the account services: audit snapshots, saving what changed, locks, the master."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model

from accounts.models import RISK_FIELDS, Account, AccountStatus, Broker, Role
from accounts.validation import AccountError, Errors, clean_actor, redact_url
from brokers.capabilities import SessionKind, UnknownCapabilities, capabilities_for
from replication.services.audit_log import changes

IST = ZoneInfo("Asia/Kolkata")
# Audit-only pseudo field: a proxy password change shows as "***". A field name, not a password.
PROXY_PASSWORD = "proxy_password"  # noqa: S105
AUDIT_SECRETS = (*Account.SECRET_FIELDS, PROXY_PASSWORD)
_MODEL_FIELD = {"owner_id": "owner", PROXY_PASSWORD: "proxy_url"}

AUDITED_FIELDS = (
    "broker",
    "broker_user_id",
    "display_name",
    "owner_id",
    "role",
    "status",
    "ownership",
    "ownership_proven_at",
    "consent_given_at",
    "consent_version",
    "capital_mode",
    "fixed_capital",
    "multiplier",
    "dry_run",
    "pending_policy",
    "market_after_seconds",
    *RISK_FIELDS,
    "token_obtained_at",
    "token_expires_at",
    "consecutive_failures",
    "breaker_tripped_at",
)


def consent_version_current() -> str:
    """The consent terms version new consents are recorded under (settings.CONSENT_VERSION)."""
    return str(settings.CONSENT_VERSION)


def kite_token_expiry(obtained_at: datetime) -> datetime:
    """Kite access tokens die at about 06:00 IST the next morning: the first 06:00 IST after `obtained_at`."""
    local = obtained_at.astimezone(IST)
    expiry = local.replace(hour=6, minute=0, second=0, microsecond=0)
    if expiry <= local:
        expiry += timedelta(days=1)
    return expiry.astimezone(UTC)


HEADLESS_LOGIN_FIELDS = ("pin", "totp_secret")


def has_headless_login(broker: str | None) -> bool:
    """Whether the broker's session is a headless login with a stored PIN and TOTP secret (Angel One)."""
    try:
        return broker is not None and capabilities_for(broker).session.kind is SessionKind.HEADLESS_TOTP
    except UnknownCapabilities:
        return False


def check_headless_fields(broker: str | None, given: dict[str, Any], errors: Errors) -> None:
    """A PIN or TOTP secret for a broker without a headless login is refused (field by field)."""
    if broker is None or has_headless_login(broker):
        return
    names = [
        capabilities_for(kind).name
        for kind in Broker.values
        if has_headless_login(kind)  # the brokers that take them, by capability
    ]
    for field in HEADLESS_LOGIN_FIELDS:
        if given.get(field) is not None:
            errors.add(
                "credentials_not_allowed", field, f"{field} is for {' and '.join(names)} accounts only"
            )


def state(account: Account) -> dict[str, Any]:
    """What an audit diff compares: plain fields, the proxy URL without its password, credentials."""
    snapshot: dict[str, Any] = {}
    for name in AUDITED_FIELDS:
        value = getattr(account, name)
        snapshot[name] = list(value) if isinstance(value, list) else value
    snapshot["proxy_url"] = redact_url(account.proxy_url)
    snapshot[PROXY_PASSWORD] = urlsplit(account.proxy_url).password or ""
    for name in Account.SECRET_FIELDS:
        snapshot[name] = getattr(account, name)  # changes() reduces these to "***"
    return snapshot


def diff(before: dict[str, Any], account: Account) -> dict[str, Any]:
    return changes(before, state(account), secret_fields=AUDIT_SECRETS)


def save_changes(account: Account, before: dict[str, Any]) -> dict[str, Any]:
    """Save the fields that changed since `before` (a `state()`); returns the audit diff."""
    delta = diff(before, account)
    fields = sorted({_MODEL_FIELD.get(name, name) for name in delta})
    if fields:
        account.save(update_fields=[*fields, "updated_at"])
    return delta


def lock(account: Account) -> Account:
    """The account's row, locked for the rest of the transaction."""
    return Account.objects.select_for_update().get(pk=account.pk)


def refreshed(account: Account) -> Account:
    account.refresh_from_db()
    return account


def other_enabled_master(*, exclude_pk: int | None) -> Account | None:
    masters = Account.objects.filter(role=Role.MASTER).exclude(status=AccountStatus.DISABLED)
    if exclude_pk is not None:
        masters = masters.exclude(pk=exclude_pk)
    return masters.order_by("pk").first()


def master_exists_error(master: Account) -> AccountError:
    message = (
        f"account {master.pk} ({master.broker}:{master.broker_user_id}) is already the master; "
        "link this account as a child, then promote it to master"
    )
    return AccountError("master_exists", message, {"master": message})


def check_owner(owner: Any, errors: Errors) -> None:
    if owner is not None and (not isinstance(owner, get_user_model()) or owner.pk is None):
        errors.add("invalid_owner", "owner", "owner must be a saved user")


def clean_actor_or_raise(actor: Any) -> str:
    errors = Errors()
    value = errors.run("actor", clean_actor, actor)
    if actor is None:
        errors.add("invalid_actor", "actor", "actor is required")
    errors.raise_if_any()
    return cast(str, value)  # not None: a missing actor raised above
