"""Moving an account to another broker kind (paper <-> kite) under the same user id."""

from __future__ import annotations

import logging
from typing import cast

from django.db import IntegrityError, transaction

from accounts.models import Account, AccountStatus, Broker, Ownership
from accounts.services._common import clean_actor_or_raise, lock, refreshed, save_changes, state
from accounts.services.linking import drop_other_claims
from accounts.validation import AccountError, Errors, clean_broker, clean_reason, clean_user_id
from brokers.paper.selectors import paper_account_exists
from replication.selectors import replicated_positions
from replication.services.audit_log import EventKind, audit

logger = logging.getLogger(__name__)


def _engine_exposure(account: Account) -> list[str]:
    """Instruments where the engine's own orders hold, or still have pending, quantity here."""
    return sorted(
        f"{exchange}:{symbol} {product}"
        for (_, exchange, symbol, product), (held, buying, selling) in replicated_positions(
            children=[account.pk]
        ).items()
        if held or buying or selling
    )


def account_switch_broker(
    *, account: Account, broker: str, actor: str, force: bool = False, reason: str = ""
) -> Account:
    """Serve `account` (same user id) through broker kind `broker`; audited as `account.broker_switched`.

    The stored credentials belong to the old broker and are forgotten (api key, secret, token and its
    times). A Kite account left without a token goes from ACTIVE to NEEDS_LOGIN; a paper account needs
    no login, so NEEDS_LOGIN becomes ACTIVE. Other statuses stay. Refused (code `positions_held`)
    while the engine's own orders hold a position or are pending there (the other broker would not
    know them) unless `force` is given with a `reason`; refused (`account_exists`) when that broker
    and user id are already linked (proven or vouched for: a client's pending claim of them is not in
    the way, and is dropped once a settled account switches there); a Kite user id must be upper
    case. Switching to the current broker changes nothing. Raises AccountError having written nothing.
    """
    actor = clean_actor_or_raise(actor)
    errors = Errors()
    target = errors.run("broker", clean_broker, broker)
    if broker is None:
        errors.add("unknown_broker", "broker", "broker is required")
    if not isinstance(force, bool):
        errors.add("invalid_flag", "force", "force must be true or false")
    why = errors.run("reason", clean_reason, reason) or ""
    if force is True and not why:
        errors.add("reason_required", "reason", "a forced broker switch needs a reason")
    errors.raise_if_any()
    target = cast(str, target)  # not None: checked above
    try:
        with transaction.atomic():
            locked = lock(account)
            old = locked.broker
            if old == target:
                return refreshed(account)
            _check(locked, target, force=force)
            before = state(locked)
            locked.broker = target
            for name in Account.SECRET_FIELDS:
                setattr(locked, name, "")
            locked.token_obtained_at = None
            locked.token_expires_at = None
            if target == Broker.KITE and locked.status == AccountStatus.ACTIVE:
                locked.status = AccountStatus.NEEDS_LOGIN
            elif target == Broker.PAPER and locked.status == AccountStatus.NEEDS_LOGIN:
                locked.status = AccountStatus.ACTIVE
            delta = save_changes(locked, before)
            delta["reason"] = why
            delta["forced"] = force
            audit(
                kind=EventKind.ACCOUNT_BROKER_SWITCHED,
                message=f"{locked.broker_user_id}: broker {old} -> {target}"
                + (" (forced)" if force else "")
                + (f": {why}" if why else ""),
                actor=actor,
                data=delta,
                account=locked,
            )
            if not locked.is_pending:  # a client's pending claim of the id it now has is dropped
                drop_other_claims(locked, actor=actor)
    except IntegrityError as exc:
        # Only a concurrent link of the same (broker, user id) gets here.
        raise AccountError("conflict", "the account changed at the same time; try again", {}) from exc
    logger.info("account %s moved from %s to %s by %s", locked.pk, old, target, actor)
    return refreshed(account)


def _check(locked: Account, target: str, *, force: bool) -> None:
    errors = Errors()
    if target == Broker.KITE and clean_user_id(locked.broker_user_id, broker=Broker.KITE) != (
        locked.broker_user_id
    ):
        errors.add("invalid_user_id", "user_id", "a Kite user id is upper case; link the account anew")
    elif (
        Account.objects.filter(broker=target, broker_user_id=locked.broker_user_id)
        .exclude(ownership=Ownership.PENDING)
        .exists()
    ):
        message = f"{target}:{locked.broker_user_id} is already linked as another account"
        errors.add("account_exists", "broker", message)
    elif target == Broker.PAPER and not paper_account_exists(user_id=locked.broker_user_id):
        errors.add(
            "paper_account_unknown",
            "broker",
            f"no paper account {locked.broker_user_id!r} on the paper exchange: open it first "
            f"(`manage.py paper open {locked.broker_user_id} --cash AMOUNT`), then switch",
        )
    errors.raise_if_any()
    exposure = _engine_exposure(locked)
    if exposure and not force:
        listed = ", ".join(exposure[:5])
        message = (
            f"the engine holds replicated positions or pending orders in this account ({listed}); "
            "exit them first, or have staff force the switch with a reason"
        )
        raise AccountError("positions_held", message, {"force": message})
