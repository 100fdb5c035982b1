"""Credentials (write-only) and acting for an account at its broker."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker
from accounts.services._common import (
    check_headless_fields,
    clean_actor_or_raise,
    lock,
    refreshed,
    save_changes,
    state,
)
from accounts.validation import (
    Errors,
    clean_access_token,
    clean_api_key,
    clean_api_secret,
    clean_pin,
    clean_totp_secret,
)
from brokers.base import BrokerClient
from brokers.capabilities import capabilities_for
from brokers.registry import build_client
from replication.models import MarginSnapshot  # the return type only: written by replication.services
from replication.services.audit_log import EventKind, audit
from replication.services.snapshots import snapshot_record


def account_set_credentials(
    *,
    account: Account,
    actor: str,
    api_key: str | None = None,
    api_secret: str | None = None,
    access_token: str | None = None,
    expires_at: datetime | None = None,
    pin: str | None = None,
    totp_secret: str | None = None,
) -> Account:
    """Store new credentials: None keeps a value, access_token="" forgets the session.

    `pin` and `totp_secret` (a broker with a headless TOTP login: Angel One) let the server log in
    by itself every day; they are stored encrypted, never shown and audited by name only. This
    makes no broker call (it runs inside the caller's transactions): `account_link` checks them
    with one login.

    A new access token expires at `expires_at` (aware) or else when the broker's session dies
    (`capabilities_for(broker).session`: Kite's next 06:00 IST, Angel One's next midnight IST), and
    brings a NEEDS_LOGIN account back to ACTIVE. The audit row names the fields that changed, never a value.
    """
    actor = clean_actor_or_raise(actor)
    errors = Errors()
    key = errors.run("api_key", clean_api_key, api_key)
    secret = errors.run("api_secret", clean_api_secret, api_secret)
    token = "" if access_token == "" else errors.run("access_token", clean_access_token, access_token)
    new_pin = errors.run("pin", clean_pin, pin)
    new_totp_secret = errors.run("totp_secret", clean_totp_secret, totp_secret)
    if account.broker == Broker.PAPER and any(v is not None for v in (api_key, api_secret, access_token)):
        errors.add("credentials_not_allowed", "api_key", "paper accounts take no credentials")
    check_headless_fields(account.broker, {"pin": pin, "totp_secret": totp_secret}, errors)
    if expires_at is not None:
        if not isinstance(expires_at, datetime) or timezone.is_naive(expires_at):
            errors.add("invalid_expiry", "expires_at", "expires_at must be an aware datetime")
        elif not token:
            errors.add("invalid_expiry", "expires_at", "expires_at goes with a new access token")
    errors.raise_if_any()
    now = timezone.now()
    with transaction.atomic():
        locked = lock(account)
        before = state(locked)
        # setattr: the encrypted fields are untyped in the stubs (they hold str at runtime).
        if key is not None:
            setattr(locked, "api_key", key)  # noqa: B010
        if secret is not None:
            setattr(locked, "api_secret", secret)  # noqa: B010
        if new_pin is not None:
            setattr(locked, "pin", new_pin)  # noqa: B010
        if new_totp_secret is not None:
            setattr(locked, "totp_secret", new_totp_secret)  # noqa: B010
        if token == "":
            setattr(locked, "access_token", "")  # noqa: B010
            locked.token_obtained_at = None
            locked.token_expires_at = None
        elif token is not None:
            setattr(locked, "access_token", token)  # noqa: B010
            locked.token_obtained_at = now
            expiry = expires_at or capabilities_for(locked.broker).session.token_expiry(now)
            locked.token_expires_at = expiry.astimezone(UTC) if expiry is not None else None
            if locked.status == AccountStatus.NEEDS_LOGIN:
                locked.status = AccountStatus.ACTIVE
        delta = save_changes(locked, before)
        if delta:
            changed = [name for name in Account.SECRET_FIELDS if name in delta]
            audit(
                kind=EventKind.ACCOUNT_CREDENTIALS_CHANGED,
                message=f"credentials changed: {', '.join(changed) or 'none'}",
                actor=actor,
                data=delta,
                account=locked,
            )
    return refreshed(account)


def account_broker_client(*, account: Account) -> BrokerClient:
    """A broker client acting for `account`. Raises CredentialDecryptError under a wrong key."""
    return build_client(account.broker_credentials())


def account_refresh_margins(*, account: Account) -> MarginSnapshot:
    """Read the account's funds from its broker and store a snapshot (U, A, C = U + A).

    Makes a broker call: call it outside any transaction. Broker errors propagate.
    """
    funds = account_broker_client(account=account).funds()
    return snapshot_record(
        account=account, used_margin=funds.used, available_margin=funds.available, capital=funds.capital
    )
