"""Plain words for the codes the engine writes, as the staff pages show them: words first, the code
beside them (`below one lot (below_one_unit)`), so a person reads the sentence and can still search
the log or the code for the code.

One mapping for every dashboard template (`{% load plain_words %}`, `{{ code|plain }}`): reason
codes of child orders (sizing, the send gate, the sender, exits and staff actions), where a
master event's margin figure came from, reconciliation grades, and audit event kinds (their
labels, declared once with `EventKind`). A code missing here is shown as it is: a new code never
breaks a page.
"""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from replication.models import EventKind

register = template.Library()

REASONS: dict[str, str] = {
    # Sizing (replication.sizing.Reason): why an entry is zero or smaller than the master's share.
    "ok": "sized in full",
    "no_capital": "no capital",
    "no_available_margin": "no margin available",
    "capped_by_available": "reduced to the margin available",
    "below_one_unit": "below one lot",
    "instrument_not_allowed": "instrument not on the allowed list",
    "instrument_blocked": "instrument blocked",
    "product_not_allowed": "product not on the allowed list",
    "max_lots_per_order": "capped at the lots-per-order limit",
    "max_quantity": "capped at the quantity limit",
    "max_order_value": "capped at the order-value limit",
    "max_open_positions": "open-positions limit reached",
    "daily_loss_limit": "daily loss limit reached",
    "nothing_held": "nothing held to exit",
    "bad_input": "could not be sized (bad input)",
    "no_margin_figure": "margin could not be read",
    "loss_unmeasurable": "day's loss could not be measured",
    "sizing_error": "sizing failed",
    # The send gate (replication.gate) and the sender.
    "engine_halted": "engine halted",
    "engine_paused": "engine paused: no new entries",
    "child_paused": "child paused: no new entries",
    "child_halted": "child halted: nothing sent",
    "child_disabled": "child disabled",
    "breaker_tripped": "circuit breaker tripped",
    "no_consent": "no consent: no new entries",
    "needs_login": "broker login needed",
    "token_expired": "broker session expired",
    "credentials": "credentials unreadable",
    "ownership_pending": "account not yet proven by a login",
    "not_a_child": "no longer a child",
    "no_account": "account no longer linked",
    "dry_run": "dry run: recorded, not sent",
    "rate_limited": "rate limited: sent again shortly",
    "lease_expired": "engine lease lost before sending",
    "broker_rejected": "rejected by the broker",
    "hedge_leg_failed": "other hedge leg failed",
    "master_cancelled": "master cancelled first",
    "master_flat": "master closed the position",
    "absent": "not found at the broker",
    "crash_recovery": "recovered after a restart",
    "unexpected": "unexpected error",
    # Exits and staff actions.
    "owed_exit": "owed exit",
    "flattened": "flattened by staff",
    "flatten": "flattened by staff",
    "staff_rejected": "rejected by staff",
    "corrective": "corrective order",
}

MARGIN_SOURCES: dict[str, str] = {
    "delta_u": "rise in used margin",
    "calculator": "broker's margin calculator",
}

GRADES: dict[str, str] = {
    "ok": "in line",
    "minor": "minor drift",
    "major": "major drift",
    "unknown": "broker unreadable",
}

# Event kinds: their labels ("Send rejected"), lower-cased to read as words in a sentence.
EVENT_KINDS: dict[str, str] = {kind.value: str(kind.label).lower() for kind in EventKind}

# One look-up for every code; sources and grades first where a code means something else there.
WORDS: dict[str, str] = {**EVENT_KINDS, **REASONS, **MARGIN_SOURCES}


def words_for(code: str, *, kind: str = "") -> str:
    """The plain words of `code` (empty when there are none). `kind` "grade" reads reconciliation
    grades (whose `ok` is not the sizing `ok`)."""
    table = GRADES if kind == "grade" else WORDS
    return table.get(code, "")


@register.filter
def plain(code: object, kind: str = "") -> SafeString | str:
    """`below one lot (below_one_unit)`: words, then the code; the code alone when it has none."""
    text = "" if code is None else str(code)
    words = words_for(text, kind=kind)
    if not text or not words or words == text:
        return text
    return format_html('{} <span class="code mono muted">({})</span>', words, text)
