"""The server's own broker login (a headless TOTP session: Angel One's client code, PIN and TOTP).

A broker call: never inside a DB transaction. Used when an account is linked (one login checks the
PIN and TOTP secret before anything is stored) and by the 08:45 pre-open check (a fresh session
for the day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from accounts.models import Account
from accounts.services._common import clean_actor_or_raise
from accounts.services.credentials import account_set_credentials
from accounts.validation import AccountError
from brokers.capabilities import capabilities_for
from brokers.errors import BrokerError, TokenExpired
from brokers.registry import BrokerCredentials, build_client


@dataclass(frozen=True, slots=True)
class HeadlessSession:
    """A session token and when it dies (aware UTC). The token is a secret: never log it."""

    access_token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"HeadlessSession(expires_at={self.expires_at!r})"


def refuse_in_transaction(what: str) -> None:
    """Broker calls never run inside a DB transaction (a slow broker would hold row locks)."""
    if transaction.get_connection().in_atomic_block:
        raise AccountError(
            "in_transaction", f"{what} calls the broker: call it outside any database transaction", {}
        )


def headless_login(creds: BrokerCredentials) -> HeadlessSession:
    """Log in at the broker with the client code, PIN and TOTP secret in `creds`.

    Raises BrokerError (TokenExpired `login_refused` for a wrong PIN or TOTP, never retried).
    """
    client = build_client(creds)
    login = getattr(client, "login", None)  # the adapter's own (AngelBroker.login), not the protocol's
    if not callable(login):
        raise BrokerError(f"{capabilities_for(creds.broker).name} has no headless login", code="no_login")
    session = login()
    token = str(getattr(session, "jwt_token", "") or "")
    expires_at = getattr(session, "expires_at", None)
    if not token or not isinstance(expires_at, datetime):
        raise TokenExpired("the broker returned no session", code="login_refused")
    return HeadlessSession(access_token=token, expires_at=expires_at)


def login_error(exc: BrokerError, *, broker: str) -> AccountError:
    """A failed link-time login as the AccountError the link raises (nothing was stored)."""
    name = capabilities_for(broker).name
    if isinstance(exc, TokenExpired) or exc.code in ("login_refused", "wrong_client"):
        message = f"{name} refused the login, nothing stored: {exc.message}"
        return AccountError("login_refused", message, {"pin": message})
    message = f"could not log in at {name}, nothing stored ({exc.code}): {exc.message}; try again"
    return AccountError("login_failed", message, {"pin": message})


def account_headless_login(*, account: Account, actor: str) -> Account:
    """Log in for `account` with its stored PIN and TOTP secret and store the day's session.

    A broker call: outside any transaction. Raises BrokerError when the broker refuses or cannot
    be reached (nothing stored), CredentialDecryptError when the stored secrets cannot be read.
    """
    actor = clean_actor_or_raise(actor)
    refuse_in_transaction("account_headless_login")
    creds = account.broker_credentials()
    creds = BrokerCredentials(
        broker=creds.broker,
        user_id=creds.user_id,
        api_key=creds.api_key,
        proxy_url=creds.proxy_url,
        pin=creds.pin,
        totp_secret=creds.totp_secret,
    )
    session = headless_login(creds)
    return account_set_credentials(
        account=account, actor=actor, access_token=session.access_token, expires_at=session.expires_at
    )
