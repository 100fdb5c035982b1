"""Role, status and consent changes: promote the master, pause/resume/halt/disable, record consent."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import cast

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, AccountStatus, Role
from accounts.services._common import (
    clean_actor_or_raise,
    lock,
    master_exists_error,
    other_enabled_master,
    refreshed,
    save_changes,
    state,
)
from accounts.services.unlinking import account_engine_holdings, positions_held_error
from accounts.validation import (
    AccountError,
    Errors,
    clean_actor,
    clean_consent_version,
    clean_reason,
    clean_status,
)
from brokers.capabilities import SessionKind, capabilities_for
from replication.services.audit_log import EventKind, audit
from replication.services.snapshots import master_positions_forget

logger = logging.getLogger(__name__)

# Any status may move to any other; `account_set_status` adds the master and login guards.
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    status: frozenset(AccountStatus.values) - {status} for status in AccountStatus.values
}


def account_promote_master(*, account: Account, actor: str) -> Account:
    """Make `account` the master; the previous enabled master becomes a child in the same transaction.

    Refused (`account_disabled`) for a disabled account and (`master_unproven`) for a client's
    pending claim, not yet proven by a broker login.
    """
    actor = clean_actor_or_raise(actor)
    with transaction.atomic():
        # Lock the target and every enabled master, in primary-key order (no lock-order deadlocks).
        rows = (
            Account.objects.select_for_update()
            .filter(Q(pk=account.pk) | (Q(role=Role.MASTER) & ~Q(status=AccountStatus.DISABLED)))
            .order_by("pk")
        )
        locked = {row.pk: row for row in rows}
        target = locked.pop(account.pk, None)
        if target is None:
            raise AccountError("not_found", f"account {account.pk} does not exist", {})
        if target.status == AccountStatus.DISABLED:
            message = "a disabled account cannot be the master; enable it first"
            raise AccountError("account_disabled", message, {"status": message})
        if target.is_pending:
            message = "an account not yet proven by a broker login cannot be the master"
            raise AccountError("master_unproven", message, {"ownership": message})
        if target.is_master:
            return refreshed(account)
        previous = list(locked.values())
        for old in previous:  # demote first: the database never sees two enabled masters
            before = state(old)
            old.role = Role.CHILD
            audit(
                kind=EventKind.ACCOUNT_MASTER_DEMOTED,
                message=f"{old.broker}:{old.broker_user_id} is now a child (account {target.pk} promoted)",
                actor=actor,
                data=save_changes(old, before),
                account=old,
            )
        before = state(target)
        target.role = Role.MASTER
        delta = save_changes(target, before)
        delta["previous_master_ids"] = [old.pk for old in previous]
        # The book it brings is known, not new: the engine takes orders placed before this audit
        # row as known, and positions stored from an earlier term as master are stale (its first
        # look as master reads them afresh).
        master_positions_forget(account=target)
        audit(
            kind=EventKind.ACCOUNT_MASTER_PROMOTED,
            message=f"{target.broker}:{target.broker_user_id} promoted to master",
            actor=actor,
            data=delta,
            account=target,
        )
    logger.info("account %s promoted to master by %s", target.pk, actor)
    return refreshed(account)


def _check_force(errors: Errors, *, force: object, reason: str) -> None:
    """`force` is a flag, and a forced status change carries its reason."""
    if not isinstance(force, bool):
        errors.add("invalid_flag", "force", "force must be true or false")
    elif force and not reason:
        errors.add("reason_required", "reason", "a forced status change needs a reason")


def _token_live(account: Account, now: datetime) -> bool:
    if not account.access_token:
        return False
    return account.token_expires_at is None or account.token_expires_at > now


def _login_missing(account: Account, now: datetime) -> str:
    """Why `account` cannot trade for want of a session ("" when it can): its broker's session
    needs a token, none is live, and the server cannot log in by itself (a headless login needs
    the stored PIN and TOTP secret)."""
    session = capabilities_for(account.broker).session
    if not session.needs_token or _token_live(account, now):
        return ""
    name = capabilities_for(account.broker).name
    if session.kind is SessionKind.HEADLESS_TOTP:
        if account.pin and account.totp_secret:
            return ""
        return (
            f"the access token is missing or expired and no PIN and TOTP secret are stored for the "
            f"server's {name} login; store them (or a session) first"
        )
    return f"the access token is missing or expired; log in to {name} first"


def account_set_status(
    *, account: Account, status: str, actor: str, reason: str = "", force: bool = False
) -> Account:
    """Pause (exits only), resume, halt (nothing sent), disable or mark needs-login; audited with `reason`.

    Resuming clears the circuit breaker. A Kite account resumes only with a live access token. A
    disabled former master is re-enabled only when no other master is enabled. Disabling is refused
    (code `positions_held`) while the engine's own orders hold a position there or are pending, as
    unlinking is, unless `force` is given with a `reason` (both recorded, with the holdings).
    Setting the current status again changes nothing and writes no audit row.
    """
    errors = Errors()
    new = errors.run("status", clean_status, status)
    if status is None:
        errors.add("invalid_status", "status", "status is required")
    why = errors.run("reason", clean_reason, reason) or ""
    _check_force(errors, force=force, reason=why)
    actor_name = errors.run("actor", clean_actor, actor)
    if actor is None:
        errors.add("invalid_actor", "actor", "actor is required")
    errors.raise_if_any()
    new = cast(str, new)  # not None: checked above
    now = timezone.now()
    with transaction.atomic():
        locked = lock(account)
        old = locked.status
        if new == old:
            return refreshed(account)
        if new not in STATUS_TRANSITIONS[old]:
            message = f"status cannot move from {old} to {new}"
            raise AccountError("invalid_transition", message, {"status": message})
        if locked.is_master and old == AccountStatus.DISABLED:
            master = other_enabled_master(exclude_pk=locked.pk)
            if master is not None:
                raise master_exists_error(master)
        message = _login_missing(locked, now) if new == AccountStatus.ACTIVE else ""
        if message:
            raise AccountError("needs_login", message, {"status": message})
        holdings = account_engine_holdings(locked) if new == AccountStatus.DISABLED else []
        if holdings and not force:
            raise positions_held_error(holdings, action="disable")
        before = state(locked)
        locked.status = new
        if new == AccountStatus.ACTIVE:
            locked.consecutive_failures = 0
            locked.breaker_tripped_at = None
        delta = save_changes(locked, before)
        delta["reason"] = why
        if new == AccountStatus.DISABLED:
            delta["forced"] = bool(force)
            delta["holdings"] = holdings
        audit(
            kind=EventKind.ACCOUNT_STATUS_CHANGED,
            message=f"status {old} -> {new}" + (f": {why}" if why else ""),
            actor=cast(str, actor_name),  # not None: checked above
            data=delta,
            account=locked,
        )
    return refreshed(account)


def account_give_consent(*, account: Account, version: str, actor: str) -> Account:
    """Record the client's consent to replication under terms `version`, now (UTC)."""
    errors = Errors()
    terms = errors.run("version", clean_consent_version, version)
    if version is None:
        errors.add("invalid_consent_version", "version", "consent version is required")
    errors.raise_if_any()
    actor = clean_actor_or_raise(actor)
    with transaction.atomic():
        locked = lock(account)
        before = state(locked)
        locked.consent_given_at = timezone.now()
        locked.consent_version = cast(str, terms)  # not None: checked above
        audit(
            kind=EventKind.ACCOUNT_CONSENT_GIVEN,
            message=f"consent given (terms {locked.consent_version})",
            actor=actor,
            data=save_changes(locked, before),
            account=locked,
        )
    return refreshed(account)
