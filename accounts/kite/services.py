"""Kite daily login for linked accounts (kite/API.md §1).

- `account_kite_login_url`: where to send the account's owner to log in to Kite;
- `account_kite_complete_login`: exchange the request token Kite handed back, check it belongs to
  the right Zerodha user, store the access token encrypted (expiry: the next 06:00 IST).

Order postbacks are order flow: replication.postbacks.

Every refusal raises and changes nothing. Nothing here logs or returns a secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.db import transaction

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, Broker
from accounts.services import account_set_credentials
from accounts.services.linking import account_claim_prove
from accounts.validation import AccountError
from brokers.errors import BrokerError
from brokers.kite import session as kite_session

logger = logging.getLogger(__name__)

REQUEST_TOKEN_RE = re.compile(r"[A-Za-z0-9]{6,128}")


def kite_login_root() -> str:
    """Kite's login page (settings.KITE_LOGIN_URL; the simulator's `/_sim/login` in development)."""
    return str(settings.KITE_LOGIN_URL or kite_session.DEFAULT_LOGIN_URL)


def _secret(account: Account, field: str) -> str:
    try:
        value = account.secret(field)
    except CredentialDecryptError as exc:
        message = f"the stored {field} cannot be decrypted with the configured FIELD_ENCRYPTION_KEY"
        raise AccountError("credentials_unreadable", message, {field: message}) from exc
    if not value:
        message = f"the account has no {field}; link it with its Kite api key and secret first"
        raise AccountError("credentials_missing", message, {field: message})
    return value


def _require_kite(account: Account) -> None:
    if account.broker != Broker.KITE:
        message = f"account {account.pk} is a {account.broker} account; only Kite accounts log in to Kite"
        raise AccountError("not_kite", message, {"broker": message})


def account_kite_login_url(*, account: Account, redirect_params: Mapping[str, str] | None = None) -> str:
    """Kite's login URL for the account's app (its api key); `redirect_params` come back to the callback."""
    _require_kite(account)
    return kite_session.login_url(
        _secret(account, "api_key"), root=kite_login_root(), redirect_params=redirect_params
    )


def clean_request_token(value: Any) -> str:
    """A request token as Kite issues it (letters and digits), taken from a raw value or a pasted URL."""
    text = value.strip() if isinstance(value, str) else ""
    if "request_token=" in text:  # a pasted redirect URL, or its query string
        query = urlsplit(text).query or text
        text = (parse_qs(query).get("request_token") or [""])[0].strip()
    if not REQUEST_TOKEN_RE.fullmatch(text):
        message = "the request token must be 6-128 letters or digits (the request_token=... of the redirect)"
        raise AccountError("invalid_request_token", message, {"request_token": message})
    return text


def account_kite_complete_login(*, account: Account, request_token: str, actor: str) -> Account:
    """Exchange `request_token` for the day's access token and store it on `account`.

    Refuses (AccountError, nothing stored) when the account is not a Kite account, its api key or
    secret is missing, Kite refuses the exchange (`exchange_failed`), or the token belongs to another
    Zerodha user than the account's (`wrong_user`). On success the token is stored encrypted with
    its expiry at the next 06:00 IST, a NEEDS_LOGIN account becomes ACTIVE (paused, halted and
    disabled accounts keep their status), and the change is audited without the token. The login
    proves a client's pending claim of the user id (`account_claim_prove`: it becomes tradable and
    the other claims of the id are dropped; refused, storing nothing, when another account of the id
    is already proven or vouched for). Makes a network call: never call it inside a transaction.
    """
    _require_kite(account)
    token = clean_request_token(request_token)
    api_key = _secret(account, "api_key")
    api_secret = _secret(account, "api_secret")
    try:
        result = kite_session.exchange_request_token(
            api_key=api_key,
            api_secret=api_secret,
            request_token=token,
            root=str(settings.KITE_API_ROOT),
            proxy_url=account.proxy_url,
        )
    except BrokerError as exc:
        logger.warning("Kite login of account %s refused: %s", account.pk, exc.message)
        message = f"Kite refused the login ({exc.code}): {exc.message}. Start the login again."
        raise AccountError("exchange_failed", message, {"request_token": message}) from None
    if result.user_id != account.broker_user_id.upper():
        logger.warning(
            "Kite login of account %s (%s) returned user %s: refused",
            account.pk,
            account.broker_user_id,
            result.user_id,
        )
        message = (
            f"this login is for Zerodha user {result.user_id}, but account {account.pk} is "
            f"{account.broker_user_id}; log out of Kite and log in as {account.broker_user_id}"
        )
        raise AccountError("wrong_user", message, {"request_token": message})
    with transaction.atomic():  # the proof and the token together, or neither
        if account.is_pending:
            account_claim_prove(account=account, actor=actor)
        account = account_set_credentials(account=account, actor=actor, access_token=result.access_token)
    logger.info("Kite login stored for account %s by %s", account.pk, actor)
    return account
