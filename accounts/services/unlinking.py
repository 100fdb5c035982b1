"""Unlinking an account: disable it (rows stay for the audit trail) and forget its credentials."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from accounts.models import Account, AccountStatus
from accounts.services._common import clean_actor_or_raise, lock, refreshed, save_changes, state
from accounts.validation import AccountError, Errors, clean_reason
from replication.selectors import replicated_positions
from replication.services.audit_log import EventKind, audit

logger = logging.getLogger(__name__)


def account_engine_holdings(account: Account) -> list[dict[str, Any]]:
    """What the engine's own orders hold (or still have pending) in this account, per instrument.

    Unlinking and disabling are refused while this is not empty, unless staff force them."""
    rows = []
    for (_, exchange, symbol, product), (held, buying, selling) in sorted(
        replicated_positions(children=[account.pk]).items()
    ):
        if held or buying or selling:
            rows.append(
                {
                    "instrument": f"{exchange}:{symbol}",
                    "product": product,
                    "held": held,
                    "pending_buy": buying,
                    "pending_sell": selling,
                }
            )
    return rows


def positions_held_error(holdings: list[dict[str, Any]], *, action: str) -> AccountError:
    """The refusal (code `positions_held`) of an `action` on an account the engine holds positions in."""
    listed = ", ".join(f"{h['instrument']} {h['product']} {h['held']}" for h in holdings[:5])
    message = (
        f"the engine holds replicated positions or pending orders in this account ({listed}); "
        f"exit them first, or have staff force the {action} with a reason"
    )
    return AccountError("positions_held", message, {"force": message})


def account_unlink(*, account: Account, actor: str, force: bool = False, reason: str = "") -> Account:
    """Unlink `account`: status DISABLED, credentials forgotten, one `account.unlinked` audit row.

    Refused (code `positions_held`) while the engine's own orders hold a position there or are still
    pending, and (code `master_unlink`) for the enabled master, unless `force` is given with a
    `reason` (both recorded). Rows are kept: mappings and allocations reference the account. An
    already disabled account is returned unchanged and nothing is written. Raises AccountError having
    written nothing.
    """
    actor = clean_actor_or_raise(actor)
    errors = Errors()
    if not isinstance(force, bool):
        errors.add("invalid_flag", "force", "force must be true or false")
    why = errors.run("reason", clean_reason, reason) or ""
    if force is True and not why:
        errors.add("reason_required", "reason", "a forced unlink needs a reason")
    errors.raise_if_any()
    with transaction.atomic():
        locked = lock(account)
        if locked.status == AccountStatus.DISABLED:
            return refreshed(account)
        holdings = account_engine_holdings(locked)
        if holdings and not force:
            raise positions_held_error(holdings, action="unlink")
        if locked.is_master and not force:
            message = "this is the master account; promote another account first, or force it with a reason"
            raise AccountError("master_unlink", message, {"force": message})
        before = state(locked)
        locked.status = AccountStatus.DISABLED
        for name in Account.SECRET_FIELDS:
            setattr(locked, name, "")
        locked.token_obtained_at = None
        locked.token_expires_at = None
        delta = save_changes(locked, before)
        delta["reason"] = why
        delta["forced"] = bool(force)
        delta["holdings"] = holdings
        audit(
            kind=EventKind.ACCOUNT_UNLINKED,
            message=f"unlinked {locked.broker}:{locked.broker_user_id}"
            + (" (forced)" if force else "")
            + (f": {why}" if why else ""),
            actor=actor,
            data=delta,
            account=locked,
        )
    logger.info("account %s unlinked by %s (forced=%s)", locked.pk, actor, bool(force))
    return refreshed(account)
