"""Linking an account: create it, or update it when (broker, user id) is already linked.

Who owns a broker user id (`Account.ownership`): staff links are vouched for; a client's link
(`claim=True`, the API for non-staff users) is a pending claim, never traded and never the master,
until the first successful broker login proves the user id (`account_claim_prove`, called by the
Kite login) or staff vouch for it (`account_claim_vouch`, or a staff link naming the claimant as
owner). A pending claim never blocks another: the real owner's link of the same id is a claim of
its own. Once one account for the id is proven or vouched for, the other pending claims are
dropped (disabled, their credentials forgotten, audited) and new claims are refused
(`already_linked`). A paper account whose user id a broker account already uses is the book
behind that account (the Kite simulator serves paper books) and cannot be linked again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker, CapitalMode, Ownership, Role
from accounts.services._common import (
    check_headless_fields,
    check_owner,
    clean_actor_or_raise,
    consent_version_current,
    diff,
    has_headless_login,
    lock,
    master_exists_error,
    other_enabled_master,
    refreshed,
    save_changes,
    state,
)
from accounts.services.headless import headless_login, login_error, refuse_in_transaction
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
    clean_pin,
    clean_totp_secret,
    clean_user_id,
    flag_cleaner,
    money_cleaner,
)
from brokers.capabilities import capabilities_for
from brokers.errors import BrokerError
from brokers.paper.selectors import paper_account_exists
from brokers.registry import BrokerCredentials
from replication.services.audit_log import EventKind, audit

logger = logging.getLogger(__name__)
# Brokers whose headless login takes no api key (Dhan's generateAccessToken: client id, PIN, TOTP).
KEYLESS_LOGIN = frozenset({Broker.DHAN})


@dataclass(frozen=True, slots=True)
class _LinkInput:
    broker: str
    user_id: str
    name: str | None
    api_key: str | None
    api_secret: str | None
    access_token: str | None
    pin: str | None
    totp_secret: str | None
    master: bool
    capital_mode: str | None
    fixed_capital: Decimal | None
    multiplier: Decimal | None
    consent: bool
    owner: Any
    actor: str
    claim: bool
    # Set by a successful link-time login (never input): the session's expiry, and that it proves
    # the user id.
    token_expires_at: datetime | None = None
    logged_in: bool = False


ALREADY_LINKED = "this broker account is already linked by someone else; ask staff"


def already_linked_error(message: str = ALREADY_LINKED) -> AccountError:
    return AccountError("already_linked", message, {"user_id": message})


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
    check_headless_fields(broker, {"pin": raw["pin"], "totp_secret": raw["totp_secret"]}, errors)
    actor = errors.run("actor", clean_actor, raw["actor"])
    if raw["actor"] is None:
        errors.add("invalid_actor", "actor", "actor is required")
    check_owner(raw["owner"], errors)
    claim = bool(errors.run("claim", flag_cleaner("claim"), raw["claim"]))
    if claim and raw["owner"] is None:
        errors.add("invalid_owner", "owner", "a claim needs the owner who will prove it")
    if claim and raw["master"] is True:
        errors.add(
            "master_unproven", "master", "an account not yet proven by a broker login cannot be master"
        )
    data = _LinkInput(
        broker=cast(str, broker),  # not None once raise_if_any() below has passed
        user_id=cast(str, user_id),  # likewise
        name=errors.run("name", clean_name, raw["name"]),
        api_key=errors.run("api_key", clean_api_key, raw["api_key"]),
        api_secret=errors.run("api_secret", clean_api_secret, raw["api_secret"]),
        access_token=errors.run("access_token", clean_access_token, raw["access_token"]),
        pin=errors.run("pin", clean_pin, raw["pin"]),
        totp_secret=errors.run("totp_secret", clean_totp_secret, raw["totp_secret"]),
        master=bool(errors.run("master", flag_cleaner("master"), raw["master"])),
        capital_mode=errors.run("capital_mode", clean_capital_mode, raw["capital_mode"]),
        fixed_capital=errors.run("fixed_capital", money_cleaner("fixed_capital"), raw["fixed_capital"]),
        multiplier=errors.run("multiplier", clean_multiplier, raw["multiplier"]),
        consent=bool(errors.run("consent", flag_cleaner("consent"), raw["consent"])),
        owner=raw["owner"],
        actor=cast(str, actor),  # likewise
        claim=claim,
    )
    errors.raise_if_any()
    return data


def _target(data: _LinkInput, *, for_update: bool) -> Account | None:
    """The account this link updates (None: a new one), or `already_linked`.

    A claim updates the claimant's own account for the id (proven or pending); it is refused when
    another account for the id is proven or vouched for. A staff link updates the settled
    (proven or vouched-for) account, else the pending claim of the owner it names, else creates.
    """
    rows = Account.objects.filter(broker=data.broker, broker_user_id=data.user_id).order_by("pk")
    if for_update:
        rows = rows.select_for_update()
    accounts = list(rows)
    settled = next((row for row in accounts if not row.is_pending), None)
    owner_pk = data.owner.pk if data.owner is not None else None
    own_claim = next(
        (row for row in accounts if row.is_pending and owner_pk is not None and row.owner_id == owner_pk),
        None,
    )
    if not data.claim:
        return settled or own_claim
    if settled is not None:
        if settled.owner_id == owner_pk:
            return settled
        raise already_linked_error()
    return own_claim


def account_link_target(*, broker: Any, user_id: Any, owner: Any, claim: bool) -> Account | None:
    """The account `account_link` would update for this input (None: it would create one);
    raises AccountError `already_linked` where it would refuse a claim. Writes nothing."""
    errors = Errors()
    clean_broker_value = errors.run("broker", clean_broker, broker)
    clean_id = errors.run("user_id", lambda value: clean_user_id(value, broker=clean_broker_value), user_id)
    errors.raise_if_any()
    data = _LinkInput(
        broker=cast(str, clean_broker_value),
        user_id=cast(str, clean_id),
        name=None,
        api_key=None,
        api_secret=None,
        access_token=None,
        pin=None,
        totp_secret=None,
        master=False,
        capital_mode=None,
        fixed_capital=None,
        multiplier=None,
        consent=False,
        owner=owner,
        actor="lookup",
        claim=claim,
    )
    return _target(data, for_update=False)


def _paper_book_behind(user_id: str) -> Account | None:
    """The broker (non-paper) account, proven or vouched for, whose book is the paper account
    `user_id` where a simulator serves it (same user id)."""
    return (
        Account.objects.filter(broker_user_id__iexact=user_id)
        .exclude(broker=Broker.PAPER)
        .exclude(ownership=Ownership.PENDING)
        .order_by("pk")
        .first()
    )


def _check_against(data: _LinkInput, existing: Account | None) -> None:
    """Checks that depend on the stored account (or its absence) and on the current master."""
    errors = Errors()
    if existing is None and data.broker == Broker.KITE and not (data.api_key and data.api_secret):
        errors.add("credentials_required", "api_key", "a Kite account needs an api key and an api secret")
    if existing is None and has_headless_login(data.broker):
        message = (
            f"an {capabilities_for(data.broker).name} account needs an api key and either its PIN and TOTP "
            "secret (the server then logs in every day) or an access token"
        )
        if data.broker in KEYLESS_LOGIN:  # Dhan: client id, PIN and TOTP, no api key
            message = message.replace("an api key and either its", "either its").replace("an Dhan", "a Dhan")
        elif not data.api_key:
            errors.add("credentials_required", "api_key", message)
        if not (data.pin and data.totp_secret) and not data.access_token:
            for field in ("pin", "totp_secret"):
                if not getattr(data, field):
                    errors.add("credentials_required", field, message)
    if existing is None and data.broker == Broker.PAPER and not paper_account_exists(user_id=data.user_id):
        errors.add(
            "paper_account_unknown",
            "user_id",
            f"no paper account {data.user_id!r} on the paper exchange: open it first "
            f"(`manage.py paper open {data.user_id} --cash AMOUNT`), then link it",
        )
    if existing is None and data.broker == Broker.PAPER:
        behind = _paper_book_behind(data.user_id)
        if behind is not None:
            raise already_linked_error(
                f"paper account {data.user_id!r} is the book behind the linked {behind.broker} account "
                f"{behind.broker_user_id}; it cannot be linked again"
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
    pin: Any = None,
    totp_secret: Any = None,
    master: Any = False,
    capital_mode: Any = None,
    fixed_capital: Any = None,
    multiplier: Any = None,
    consent: Any = False,
    owner: Any = None,
    actor: Any = "validate",
    claim: Any = False,
) -> None:
    """Raise the AccountError `account_link` would raise for this input; writes nothing."""
    data = _clean(
        broker=broker,
        user_id=user_id,
        name=name,
        api_key=api_key,
        api_secret=api_secret,
        access_token=access_token,
        pin=pin,
        totp_secret=totp_secret,
        master=master,
        capital_mode=capital_mode,
        fixed_capital=fixed_capital,
        multiplier=multiplier,
        consent=consent,
        owner=owner,
        actor=actor,
        claim=claim,
    )
    _check_against(data, _target(data, for_update=False))


def account_link(
    *,
    broker: str,
    user_id: str,
    name: str | None = None,
    api_key: str | None = None,
    api_secret: str | None = None,
    access_token: str | None = None,
    pin: str | None = None,
    totp_secret: str | None = None,
    master: bool = False,
    capital_mode: str | None = None,
    fixed_capital: Decimal | None = None,
    multiplier: Decimal | None = None,
    consent: bool = False,
    owner: Any = None,
    actor: str,
    claim: bool = False,
    check_login: bool = True,
) -> tuple[Account, bool]:
    """Create the (broker, user_id) account, or update it when it is already linked.

    Arguments left as None keep the stored value. `master=True` makes the account the master only
    when no other master is enabled (otherwise promote it). Numbers are Decimals, ints or decimal
    strings. Kite user ids are upper-cased. Returns (account, created); raises AccountError having
    written nothing.

    `claim=True` (a client linking through the API): `owner` only claims the user id. A new
    account stays pending until a broker login proves it; an id already proven or vouched for
    by someone else is refused (`already_linked`). Without it (staff, commands, the admin) the
    link is vouched for: a pending claim of `owner` becomes vouched, and the other pending claims
    of the id are dropped.

    A broker with a headless login (Angel One): a new account needs an api key and either the
    client's PIN and TOTP secret or an access token (`credentials_required`); client codes are
    upper-cased. When the link gives an api key, PIN or TOTP secret and all three are known (given
    or stored), `account_link` logs in once at the broker before it writes anything (so call it
    outside any transaction; `in_transaction` otherwise): a refusal raises `login_refused` (or
    `login_failed`: unreachable) and stores nothing; a success stores the day's session and
    proves a pending claim (PROVEN). `check_login=False` skips that login (the admin, whose save
    runs inside Django's transaction): the server's first login checks the secrets instead.
    """
    data = _clean(
        broker=broker,
        user_id=user_id,
        name=name,
        api_key=api_key,
        api_secret=api_secret,
        access_token=access_token,
        pin=pin,
        totp_secret=totp_secret,
        master=master,
        capital_mode=capital_mode,
        fixed_capital=fixed_capital,
        multiplier=multiplier,
        consent=consent,
        owner=owner,
        actor=actor,
        claim=claim,
    )
    if check_login:
        data = _link_login(data)
    try:
        with transaction.atomic():
            existing = _target(data, for_update=True)
            _check_against(data, existing)
            account, created = _write(data, existing)
            if data.logged_in and account.is_pending:
                account = _settle(account=account, ownership=Ownership.PROVEN, actor=data.actor)
            if not account.is_pending:
                drop_other_claims(account, actor=data.actor)
            return account, created
    except IntegrityError as exc:
        # Only a concurrent link of the same account, or a concurrent new master, gets here.
        raise AccountError(
            "conflict", "the account or the master changed at the same time; try again", {}
        ) from exc


def _link_login(data: _LinkInput) -> _LinkInput:
    """For a broker with a headless login: one login with the given (else stored) api key, PIN
    and TOTP secret, when the link gives one of them and all three are known. Every check that
    needs no broker runs first, so bad input never spends a login (a wrong PIN tried too often
    locks the client out). Returns `data` with the session to store."""
    if not has_headless_login(data.broker):
        return data
    if all(getattr(data, field) is None for field in ("api_key", "pin", "totp_secret")):
        return data
    existing = _target(data, for_update=False)
    _check_against(data, existing)
    stored = existing.broker_credentials() if existing is not None else None
    api_key = data.api_key or (stored.api_key if stored else "")
    pin = data.pin or (stored.pin if stored else "")
    totp_secret = data.totp_secret or (stored.totp_secret if stored else "")
    if not ((api_key or data.broker in KEYLESS_LOGIN) and pin and totp_secret):
        return data
    refuse_in_transaction("account_link (a login at the broker)")
    creds = BrokerCredentials(
        broker=data.broker,
        user_id=data.user_id,
        api_key=api_key,
        proxy_url=existing.proxy_url if existing is not None else "",
        pin=pin,
        totp_secret=totp_secret,
    )
    try:
        session = headless_login(creds)
    except BrokerError as exc:
        logger.info("link-time login of %s:%s refused (%s)", data.broker, data.user_id, exc.code)
        raise login_error(exc, broker=data.broker) from None
    return replace(
        data, access_token=session.access_token, token_expires_at=session.expires_at, logged_in=True
    )


def _write(data: _LinkInput, existing: Account | None) -> tuple[Account, bool]:
    now = timezone.now()
    created = existing is None
    account = existing or Account(
        broker=data.broker,
        broker_user_id=data.user_id,
        role=Role.CHILD,
        ownership=Ownership.PENDING if data.claim else Ownership.VOUCHED,
    )
    before = {} if created else state(account)
    if not data.claim and account.is_pending:  # staff vouch for the claim they link
        account.ownership = Ownership.VOUCHED
    if data.name is not None:
        account.display_name = data.name
    if data.owner is not None:
        account.owner = data.owner
    for field in ("api_key", "api_secret", "pin", "totp_secret"):
        if getattr(data, field) is not None:
            setattr(account, field, getattr(data, field))
    if data.access_token is not None:
        setattr(account, "access_token", data.access_token)  # noqa: B010  (encrypted field: untyped in stubs)
        account.token_obtained_at = now
        account.token_expires_at = data.token_expires_at or capabilities_for(
            account.broker
        ).session.token_expiry(now)
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
        pending = " (pending: not yet proven by a broker login)" if account.is_pending else ""
        audit(
            kind=EventKind.ACCOUNT_LINKED if created else EventKind.ACCOUNT_UPDATED,
            message=f"{verb} {account.broker}:{account.broker_user_id} as {account.role}{pending}",
            actor=data.actor,
            data=delta,
            account=account,
        )
        logger.info("account %s %s by %s", account.pk, verb, data.actor)
    return account, created


# --- proving a claim ---------------------------------------------------------------------------


def drop_other_claims(account: Account, *, actor: str) -> list[Account]:
    """Disable the other pending claims of `account`'s user id (and, for a broker account, pending
    claims of the paper book behind it), forgetting their credentials; one audit row each."""
    others = Account.objects.select_for_update().filter(ownership=Ownership.PENDING).exclude(pk=account.pk)
    same_id = others.filter(broker=account.broker, broker_user_id=account.broker_user_id)
    if account.broker != Broker.PAPER:
        same_id = same_id | others.filter(broker=Broker.PAPER, broker_user_id__iexact=account.broker_user_id)
    dropped = []
    for claim in same_id.order_by("pk"):
        before = state(claim)
        claim.status = AccountStatus.DISABLED
        for field in Account.SECRET_FIELDS:
            setattr(claim, field, "")
        claim.token_obtained_at = claim.token_expires_at = None
        audit(
            kind=EventKind.ACCOUNT_CLAIM_DROPPED,
            message=(
                f"pending claim of {claim.broker}:{claim.broker_user_id} dropped: account {account.pk} "
                f"is {account.get_ownership_display().lower()}"
            ),
            actor=actor,
            data=save_changes(claim, before),
            account=claim,
        )
        logger.info("pending claim %s dropped (account %s settled) by %s", claim.pk, account.pk, actor)
        dropped.append(claim)
    return dropped


def _settle(*, account: Account, ownership: str, actor: str) -> Account:
    actor = clean_actor_or_raise(actor)
    with transaction.atomic():
        locked = lock(account)
        if not locked.is_pending:
            return refreshed(account)
        rival = (
            Account.objects.filter(broker=locked.broker, broker_user_id=locked.broker_user_id)
            .exclude(ownership=Ownership.PENDING)
            .exclude(pk=locked.pk)
            .first()
        )
        if rival is not None:
            raise already_linked_error(
                f"{locked.broker}:{locked.broker_user_id} is already account {rival.pk}; this claim cannot "
                "be proven"
            )
        if locked.status == AccountStatus.DISABLED:
            message = "this claim was dropped; link the account again"
            raise AccountError("account_disabled", message, {"status": message})
        before = state(locked)
        locked.ownership = ownership
        locked.ownership_proven_at = timezone.now()
        delta = save_changes(locked, before)
        audit(
            kind=EventKind.ACCOUNT_CLAIM_PROVEN
            if ownership == Ownership.PROVEN
            else EventKind.ACCOUNT_CLAIM_VOUCHED,
            message=f"{locked.broker}:{locked.broker_user_id} is {locked.get_ownership_display().lower()}",
            actor=actor,
            data=delta,
            account=locked,
        )
        drop_other_claims(locked, actor=actor)
    logger.info("account %s %s by %s", locked.pk, ownership, actor)
    return refreshed(account)


def account_claim_prove(*, account: Account, actor: str) -> Account:
    """A successful broker login as the account's user id proves a pending claim.

    The caller has checked the login (the Kite login refuses another Zerodha user). The account
    becomes PROVEN and tradable; every other pending claim of the id is dropped. Refused
    (`already_linked`) when another account for the id is already proven or vouched for, and
    (`account_disabled`) for a claim that was dropped. An account not pending is left as it is.
    """
    return _settle(account=account, ownership=Ownership.PROVEN, actor=actor)


def account_claim_vouch(*, account: Account, actor: str) -> Account:
    """Staff vouch for a pending claim (a paper claim has no broker login to prove it)."""
    return _settle(account=account, ownership=Ownership.VOUCHED, actor=actor)
