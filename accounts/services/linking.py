"""Linking an account: create it, or update it when (broker, user id) is already linked."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker, CapitalMode, Role
from accounts.services._common import (
    check_owner,
    consent_version_current,
    diff,
    kite_token_expiry,
    master_exists_error,
    other_enabled_master,
    save_changes,
    state,
)
from accounts.validation import (
    AccountError,
    Errors,
    clean_access_token,
    clean_actor,
    clean_api_key,
    clean_api_secret,
    clean_broker,
    clean_capital_mode,
    clean_multiplier,
    clean_name,
    clean_user_id,
    flag_cleaner,
    money_cleaner,
)
from brokers.paper.selectors import paper_account_exists
from replication.audit import audit

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _LinkInput:
    broker: str
    user_id: str
    name: str | None
    api_key: str | None
    api_secret: str | None
    access_token: str | None
    master: bool
    capital_mode: str | None
    fixed_capital: Decimal | None
    multiplier: Decimal | None
    consent: bool
    owner: Any
    actor: str


def _clean(**raw: Any) -> _LinkInput:
    """Field-by-field checks that need no database; every problem is reported at once."""
    errors = Errors()
    broker = errors.run("broker", clean_broker, raw["broker"])
    if raw["broker"] is None:
        errors.add("unknown_broker", "broker", "broker is required")
    user_id = errors.run("user_id", lambda value: clean_user_id(value, broker=broker), raw["user_id"])
    if raw["user_id"] is None:
        errors.add("invalid_user_id", "user_id", "user id is required")
    credentials = (raw["api_key"], raw["api_secret"], raw["access_token"])
    if broker == Broker.PAPER and any(value is not None for value in credentials):
        errors.add("credentials_not_allowed", "api_key", "paper accounts take no credentials")
    actor = errors.run("actor", clean_actor, raw["actor"])
    if raw["actor"] is None:
        errors.add("invalid_actor", "actor", "actor is required")
    check_owner(raw["owner"], errors)
    data = _LinkInput(
        broker=cast(str, broker),  # not None once raise_if_any() below has passed
        user_id=cast(str, user_id),  # likewise
        name=errors.run("name", clean_name, raw["name"]),
        api_key=errors.run("api_key", clean_api_key, raw["api_key"]),
        api_secret=errors.run("api_secret", clean_api_secret, raw["api_secret"]),
        access_token=errors.run("access_token", clean_access_token, raw["access_token"]),
        master=bool(errors.run("master", flag_cleaner("master"), raw["master"])),
        capital_mode=errors.run("capital_mode", clean_capital_mode, raw["capital_mode"]),
        fixed_capital=errors.run("fixed_capital", money_cleaner("fixed_capital"), raw["fixed_capital"]),
        multiplier=errors.run("multiplier", clean_multiplier, raw["multiplier"]),
        consent=bool(errors.run("consent", flag_cleaner("consent"), raw["consent"])),
        owner=raw["owner"],
        actor=cast(str, actor),  # likewise
    )
    errors.raise_if_any()
    return data


def _check_against(data: _LinkInput, existing: Account | None) -> None:
    """Checks that depend on the stored account (or its absence) and on the current master."""
    errors = Errors()
    if existing is None and data.broker == Broker.KITE and not (data.api_key and data.api_secret):
        errors.add("credentials_required", "api_key", "a Kite account needs an api key and an api secret")
    if existing is None and data.broker == Broker.PAPER and not paper_account_exists(user_id=data.user_id):
        errors.add(
            "paper_account_unknown",
            "user_id",
            f"no paper account {data.user_id!r} on the paper exchange: open it first "
            f"(`manage.py paper open {data.user_id} --cash AMOUNT`), then link it",
        )
    mode = data.capital_mode or (existing.capital_mode if existing else CapitalMode.TOTAL)
    if data.fixed_capital is not None and mode != CapitalMode.FIXED:
        errors.add(
            "fixed_capital_without_fixed_mode", "fixed_capital", "a fixed capital needs capital mode 'fixed'"
        )
    elif mode == CapitalMode.FIXED:
        stored = existing.fixed_capital if existing and existing.capital_mode == CapitalMode.FIXED else None
        if (data.fixed_capital or stored) is None:
            errors.add(
                "fixed_mode_without_capital", "fixed_capital", "capital mode 'fixed' needs a fixed capital"
            )
    errors.raise_if_any()
    if data.master and (existing is None or not existing.is_master):
        master = other_enabled_master(exclude_pk=existing.pk if existing else None)
        if master is not None:
            raise master_exists_error(master)


def account_link_validate(
    *,
    broker: Any,
    user_id: Any,
    name: Any = None,
    api_key: Any = None,
    api_secret: Any = None,
    access_token: Any = None,
    master: Any = False,
    capital_mode: Any = None,
    fixed_capital: Any = None,
    multiplier: Any = None,
    consent: Any = False,
    owner: Any = None,
    actor: Any = "validate",
) -> None:
    """Raise the AccountError `account_link` would raise for this input; writes nothing."""
    data = _clean(
        broker=broker,
        user_id=user_id,
        name=name,
        api_key=api_key,
        api_secret=api_secret,
        access_token=access_token,
        master=master,
        capital_mode=capital_mode,
        fixed_capital=fixed_capital,
        multiplier=multiplier,
        consent=consent,
        owner=owner,
        actor=actor,
    )
    _check_against(data, Account.objects.filter(broker=data.broker, broker_user_id=data.user_id).first())


def account_link(
    *,
    broker: str,
    user_id: str,
    name: str | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
    access_token: str | None = None,
    master: bool = False,
    capital_mode: str | None = None,
    fixed_capital: Decimal | None = None,
    multiplier: Decimal | None = None,
    consent: bool = False,
    owner: Any = None,
    actor: str,
) -> tuple[Account, bool]:
    """Create the (broker, user_id) account, or update it when it is already linked.

    Arguments left as None keep the stored value. `master=True` makes the account the master only
    when no other master is enabled (otherwise promote it). Numbers are Decimals, ints or decimal
    strings. Kite user ids are upper-cased. Returns (account, created); raises AccountError having
    written nothing.
    """
    data = _clean(
        broker=broker,
        user_id=user_id,
        name=name,
        api_key=api_key,
        api_secret=api_secret,
        access_token=access_token,
        master=master,
        capital_mode=capital_mode,
        fixed_capital=fixed_capital,
        multiplier=multiplier,
        consent=consent,
        owner=owner,
        actor=actor,
    )
    try:
        with transaction.atomic():
            existing = (
                Account.objects.select_for_update()
                .filter(broker=data.broker, broker_user_id=data.user_id)
                .first()
            )
            _check_against(data, existing)
            return _write(data, existing)
    except IntegrityError as exc:
        # Only a concurrent link of the same account, or a concurrent new master, gets here.
        raise AccountError(
            "conflict", "the account or the master changed at the same time; try again", {}
        ) from exc


def _write(data: _LinkInput, existing: Account | None) -> tuple[Account, bool]:
    now = timezone.now()
    created = existing is None
    account = existing or Account(broker=data.broker, broker_user_id=data.user_id, role=Role.CHILD)
    before = {} if created else state(account)
    if data.name is not None:
        account.display_name = data.name
    if data.owner is not None:
        account.owner = data.owner
    for field in ("api_key", "api_secret"):
        if getattr(data, field) is not None:
            setattr(account, field, getattr(data, field))
    if data.access_token is not None:
        setattr(account, "access_token", data.access_token)  # noqa: B010  (encrypted field: untyped in stubs)
        account.token_obtained_at = now
        account.token_expires_at = kite_token_expiry(now)
        if account.status == AccountStatus.NEEDS_LOGIN:
            account.status = AccountStatus.ACTIVE
    if data.capital_mode is not None:
        account.capital_mode = data.capital_mode
    if account.capital_mode != CapitalMode.FIXED:
        account.fixed_capital = None
    elif data.fixed_capital is not None:
        account.fixed_capital = data.fixed_capital
    if data.multiplier is not None:
        account.multiplier = data.multiplier
    version = consent_version_current()
    if data.consent and (not account.has_consent or account.consent_version != version):
        account.consent_given_at = now
        account.consent_version = version
    if data.master:
        account.role = Role.MASTER
    if created:
        account.save()
        delta = diff(before, account)
    else:
        delta = save_changes(account, before)
    if delta:
        verb = "linked" if created else "updated"
        audit(
            kind=f"account.{verb}",
            message=f"{verb} {account.broker}:{account.broker_user_id} as {account.role}",
            actor=data.actor,
            data=delta,
            account=account,
        )
        logger.info("account %s %s by %s", account.pk, verb, data.actor)
    return account, created
