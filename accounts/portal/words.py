"""Plain words for the engine's reason codes, as a client reads them; the code is shown beside them.

The engine writes a code (`OrderMapping.reason_code`) and a sentence (`OrderMapping.reason`) on
every order it skipped, reduced, held back or could not place. A code missing here is shown as the
engine's sentence (or the code itself): new codes never break the page.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # Sizing (replication.sizing.Reason): why an entry is zero or smaller than the master's share.
    "no_capital": "Your capital is zero, so nothing was bought or sold",
    "no_available_margin": "No margin was available in your account",
    "capped_by_available": "Reduced to fit the margin available in your account",
    "below_one_unit": "Your share came to less than one lot",
    "instrument_not_allowed": "This instrument is not on your allowed list",
    "instrument_blocked": "You blocked this instrument",
    "product_not_allowed": "This product type is not on your allowed list",
    "max_lots_per_order": "Reduced to your limit of lots per order",
    "max_quantity": "Reduced to your limit of quantity per order",
    "max_order_value": "Reduced to your limit of order value",
    "max_open_positions": "You already hold your limit of open positions",
    "daily_loss_limit": "Your daily loss limit was reached: no new entries today",
    "nothing_held": "You held nothing to exit",
    "bad_input": "The order could not be sized (the desk has been told)",
    "no_margin_figure": "Your account's margin could not be read",
    "loss_unmeasurable": "Today's loss could not be measured, so no new entry was made",
    "sizing_error": "The order could not be sized (the desk has been told)",
    # The send gate (replication.gate) and the sender.
    "engine_halted": "The desk halted all trading",
    "engine_paused": "The desk paused new entries",
    "child_paused": "Your account was paused: no new entries",
    "child_halted": "Your account was halted: nothing is sent",
    "child_disabled": "Your account is disabled",
    "breaker_tripped": "Several orders failed in a row, so new entries are paused",
    "no_consent": "Your consent is withdrawn: no new entries",
    "needs_login": "Your broker login for today is missing",
    "token_expired": "Your broker session expired: log in again",
    "credentials": "Your broker credentials could not be read",
    "ownership_pending": "Your account is not yet confirmed by a broker login",
    "not_a_child": "The account no longer follows the master",
    "no_account": "The account is no longer linked",
    "dry_run": "Dry run: recorded, not sent",
    "rate_limited": "The broker asked us to slow down; it is sent again shortly",
    "lease_expired": "The engine restarted before sending; it is checked again",
    "broker_rejected": "Your broker rejected the order",
    "hedge_leg_failed": "The other leg of this hedge failed, so this leg was not sent",
    "master_cancelled": "The master cancelled the order before it was sent",
    "master_flat": "The master closed the whole position",
    "absent": "The broker has no such order",
    "crash_recovery": "Recovered after a restart",
    "unexpected": "An unexpected error (the desk has been told)",
    # Exits and staff actions.
    "owed_exit": "An exit still owed to you, sent again",
    "flattened": "The desk closed this position",
    "flatten": "The desk closed this position",
    "staff_rejected": "The desk decided not to copy this trade",
    "corrective": "The desk corrected your position",
}

# Codes that mean "sent, but smaller than your full share" when the order still has a quantity.
REDUCING = frozenset(
    {"capped_by_available", "max_lots_per_order", "max_quantity", "max_order_value", "daily_loss_limit"}
)


def reason_words(code: str, sentence: str = "") -> str:
    """The plain words for a reason code; the engine's own sentence when the code is not known."""
    if code in REASONS:
        return REASONS[code]
    if sentence:
        return sentence[:1].upper() + sentence[1:]
    return code.replace("_", " ").capitalize()
