"""Who may do what through the API.

- Anonymous: nothing (401). Authentication is by token (`Authorization: Token <key>`) or session.
- Staff (`is_staff`): every account, every operation, any setting.
- A client (any other user) sees and changes only the accounts it owns (others answer 404), links
  accounts for itself only, never links or promotes a master, never forces an unlink, and never
  loosens what is set on its accounts:

  * risk limits only get stricter: a number limit (max lots, quantity, order value, open positions,
    daily loss) may be set where there is none or lowered, never raised or removed; an allow list
    (instruments, products) may be created or narrowed to a non-empty subset, never widened or
    cleared; the block list may only grow;
  * the multiplier may only go down; the capital mode may only move from `total` to `available`
    (available margin is never more than used + available); `fixed` mode, its amount (except
    lowering it) and the proxy and owner are staff-only;
  * the client may pause or halt its account, and may resume (or switch dry-run back off) only when
    that pause, halt or dry-run was its own doing (the newest audit row for it names the client);
    `disabled` and `needs_login` are staff-only (unlink with DELETE).

  The pending-order policy (`pending_policy`, `market_after_seconds`: what happens to a child order
  still open after the master's order filled) is an execution preference, not a risk limit: a client
  may set it either way on its own accounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import RISK_LIST_FIELDS, RISK_NUMBER_FIELDS, Account, AccountStatus, CapitalMode
from replication.selectors import event_last_change

STAFF_ONLY_SETTINGS = ("owner", "proxy_url")
NUMBER_LIMITS = RISK_NUMBER_FIELDS
# Of the risk lists, those a client may only narrow (the block list it may only grow: see below).
ALLOW_LISTS = ("allowed_instruments", "allowed_products")
# Settings a client may change freely on its own accounts (preferences, not limits).
CLIENT_PREFERENCES = ("pending_policy", "market_after_seconds")
_CLIENT_MODE_MOVES = {(CapitalMode.TOTAL, CapitalMode.AVAILABLE)}


class IsStaff(BasePermission):
    """Staff only (authenticated first: anonymous users still get 401)."""

    message = "Only staff may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


def is_staff(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(getattr(user, "is_staff", False))


def _own_doing(account: Account, field: str, username: str) -> bool:
    """Whether the newest audited change of `field` on the account was made by `username`."""
    event = event_last_change(account=account, field=field)
    return event is not None and event.actor == username


def client_settings_refusals(
    *, account: Account, cleaned: Mapping[str, Any], username: str
) -> dict[str, str]:
    """Why a client may not make these (service-cleaned) setting changes; empty when it may."""
    refusals: dict[str, str] = {}
    for name, new in cleaned.items():
        old = getattr(account, name)
        if name in RISK_LIST_FIELDS:
            old = list(old or [])
        if new == old or name in CLIENT_PREFERENCES:
            continue
        if name in STAFF_ONLY_SETTINGS:
            refusals[name] = f"only staff may change {name}"
        elif name == "capital_mode" and (old, new) not in _CLIENT_MODE_MOVES:
            refusals[name] = "clients may only switch the capital mode from 'total' to 'available'"
        elif name == "fixed_capital" and not (
            account.capital_mode == CapitalMode.FIXED and old is not None and new is not None and new < old
        ):
            refusals[name] = "clients may only lower the fixed capital"
        elif name == "multiplier" and Decimal(new) > Decimal(old):
            refusals[name] = f"clients may only lower the multiplier (now {old})"
        elif name in NUMBER_LIMITS and (new is None or (old is not None and new > old)):
            refusals[name] = f"clients may only tighten {name} (now {old if old is not None else 'no limit'})"
        elif name in ALLOW_LISTS and old and (not new or not set(new) <= set(old)):
            refusals[name] = f"clients may only narrow {name} to a non-empty subset of the current list"
        elif name == "blocked_instruments" and not set(old) <= set(new):
            refusals[name] = "clients may only add to blocked_instruments"
        elif name == "dry_run" and new is False and not _own_doing(account, "dry_run", username):
            refusals[name] = "dry run was switched on by staff; only staff may switch it off"
    return refusals


def client_status_refusal(*, account: Account, status: str, username: str) -> str | None:
    """Why a client may not move its account to `status` (already cleaned); None when it may."""
    current = account.status
    if status == current:
        return None
    if status in (AccountStatus.PAUSED, AccountStatus.HALTED) and current != AccountStatus.DISABLED:
        return None
    if status == AccountStatus.ACTIVE and current in (AccountStatus.PAUSED, AccountStatus.HALTED):
        if _own_doing(account, "status", username):
            return None
        return f"the account was {current} by staff; only staff may resume it"
    return f"only staff may move an account from {current} to {status}"


def client_link_refusals(*, existing: Account | None, cleaned: Mapping[str, Any]) -> dict[str, str]:
    """Why a client may not link with these capital settings (new accounts start at total, x1)."""
    refusals: dict[str, str] = {}
    mode_now = existing.capital_mode if existing else CapitalMode.TOTAL
    mode = cleaned.get("capital_mode")
    if mode is not None and mode != mode_now and (mode_now, mode) not in _CLIENT_MODE_MOVES:
        refusals["capital_mode"] = (
            "clients may only use capital mode 'total' or 'available'; fixed is staff-set"
        )
    if cleaned.get("fixed_capital") is not None and (
        existing is None
        or existing.fixed_capital is None
        or cleaned["fixed_capital"] > existing.fixed_capital
    ):
        refusals["fixed_capital"] = "only staff may set a fixed capital"
    multiplier = cleaned.get("multiplier")
    ceiling = existing.multiplier if existing else Decimal("1")
    if multiplier is not None and Decimal(multiplier) > ceiling:
        refusals["multiplier"] = f"clients may only lower the multiplier (at most {ceiling})"
    return refusals
