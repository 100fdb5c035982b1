"""Account settings: capital mode, fixed capital, multiplier, dry run, pending-order policy, risk limits,
name, owner, proxy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from accounts.models import Account, CapitalMode
from accounts.services._common import check_owner, clean_actor_or_raise, lock, refreshed, save_changes, state
from accounts.validation import (
    Errors,
    clean_capital_mode,
    clean_market_after_seconds,
    clean_multiplier,
    clean_name,
    clean_pending_policy,
    clean_products,
    clean_proxy_url,
    count_cleaner,
    flag_cleaner,
    instruments_cleaner,
    money_cleaner,
)
from replication.services.audit_log import EventKind, audit

# The settings `account_update_settings` accepts, each with its cleaner.
SETTING_CLEANERS: dict[str, Callable[[Any], Any]] = {
    "display_name": clean_name,
    "proxy_url": clean_proxy_url,
    "capital_mode": clean_capital_mode,
    "fixed_capital": money_cleaner("fixed_capital"),
    "multiplier": clean_multiplier,
    "dry_run": flag_cleaner("dry_run"),
    "pending_policy": clean_pending_policy,
    "market_after_seconds": clean_market_after_seconds,
    "allowed_instruments": instruments_cleaner("allowed_instruments"),
    "blocked_instruments": instruments_cleaner("blocked_instruments"),
    "allowed_products": clean_products,
    "max_lots_per_order": count_cleaner("max_lots_per_order"),
    "max_quantity": count_cleaner("max_quantity"),
    "max_order_value": money_cleaner("max_order_value"),
    "max_open_positions": count_cleaner("max_open_positions"),
    "daily_loss_limit": money_cleaner("daily_loss_limit"),
}
SETTING_NAMES = frozenset({*SETTING_CLEANERS, "owner"})
_CLEARED_BY_NONE: dict[str, Any] = {
    "fixed_capital": None,
    "max_lots_per_order": None,
    "max_quantity": None,
    "max_order_value": None,
    "max_open_positions": None,
    "daily_loss_limit": None,
    "allowed_instruments": [],
    "blocked_instruments": [],
    "allowed_products": [],
    "display_name": "",
    "proxy_url": "",
}
_REQUIRED_CODES = {
    "capital_mode": "invalid_capital_mode",
    "multiplier": "invalid_number",
    "dry_run": "invalid_flag",
    "pending_policy": "invalid_pending_policy",
    "market_after_seconds": "invalid_seconds",
}


def account_settings_validate(*, account: Account | None, **fields: Any) -> dict[str, Any]:
    """Clean settings for `account_update_settings` (or a form); raises AccountError.

    None clears a limit, a list, the name or the proxy. Returns the values to store; leaving fixed
    mode clears the fixed capital.
    """
    errors = Errors()
    cleaned: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "owner":
            check_owner(value, errors)
            cleaned[name] = value
        elif name not in SETTING_CLEANERS:
            errors.add("unknown_field", name, f"{name} is not an account setting")
        elif value is None and name in _CLEARED_BY_NONE:
            cleaned[name] = _CLEARED_BY_NONE[name]
        elif value is None:
            errors.add(_REQUIRED_CODES[name], name, f"{name} cannot be empty")
        else:
            result = errors.run(name, SETTING_CLEANERS[name], value)
            if result is not None:
                cleaned[name] = result
    errors.raise_if_any()
    mode = cleaned.get("capital_mode", account.capital_mode if account else CapitalMode.TOTAL)
    if mode != CapitalMode.FIXED:
        if cleaned.get("fixed_capital") is not None:
            errors.add(
                "fixed_capital_without_fixed_mode",
                "fixed_capital",
                "a fixed capital needs capital mode 'fixed'",
            )
        cleaned["fixed_capital"] = None
    elif cleaned.get("fixed_capital", account.fixed_capital if account else None) is None:
        errors.add(
            "fixed_mode_without_capital", "fixed_capital", "capital mode 'fixed' needs a fixed capital"
        )
    errors.raise_if_any()
    return cleaned


def account_update_settings(*, account: Account, actor: str, **fields: Any) -> Account:
    """Change settings (names in SETTING_NAMES); one audit row with the before -> after diff.

    Raises AccountError (unknown names included) having written nothing.
    """
    actor = clean_actor_or_raise(actor)
    with transaction.atomic():
        locked = lock(account)
        cleaned = account_settings_validate(account=locked, **fields)
        before = state(locked)
        for name, value in cleaned.items():
            setattr(locked, name, value)
        delta = save_changes(locked, before)
        if delta:
            audit(
                kind=EventKind.ACCOUNT_SETTINGS_UPDATED,
                message=f"settings changed: {', '.join(delta)}",
                actor=actor,
                data=delta,
                account=locked,
            )
    return refreshed(account)
