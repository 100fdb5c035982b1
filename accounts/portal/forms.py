"""Portal forms: the client's limits (tighten only), consent. The rules are checked server-side by
the views with the API's own client rules (`accounts.api.permissions`); a form only parses."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from accounts.models import RISK_NUMBER_FIELDS, Account

# What each number limit is called on the page, and its unit.
LIMIT_LABELS: dict[str, str] = {
    "max_lots_per_order": "Max lots per order",
    "max_quantity": "Max quantity per order",
    "max_order_value": "Max order value (₹)",
    "max_open_positions": "Max open positions",
    "daily_loss_limit": "Daily loss limit (₹)",
}
BLOCK_LABEL = "Blocked instruments"


class LimitsForm(forms.Form):
    """The number limits, shown with their current values, and one instrument to block.

    Leaving a number empty means "no limit": refused when there is one now (that would loosen it).
    """

    max_lots_per_order = forms.IntegerField(
        label=LIMIT_LABELS["max_lots_per_order"], min_value=1, required=False
    )
    max_quantity = forms.IntegerField(label=LIMIT_LABELS["max_quantity"], min_value=1, required=False)
    max_order_value = forms.DecimalField(
        label=LIMIT_LABELS["max_order_value"], min_value=Decimal("0.01"), decimal_places=2, required=False
    )
    max_open_positions = forms.IntegerField(
        label=LIMIT_LABELS["max_open_positions"], min_value=1, required=False
    )
    daily_loss_limit = forms.DecimalField(
        label=LIMIT_LABELS["daily_loss_limit"], min_value=Decimal("0.01"), decimal_places=2, required=False
    )
    block_instrument = forms.CharField(
        label="Block an instrument",
        max_length=80,
        required=False,
        help_text="A contract (NFO:NIFTY25DECFUT) or an underlying (NFO:NIFTY, or NIFTY on any exchange)",
        widget=forms.TextInput(attrs={"placeholder": "NFO:SYMBOL", "autocapitalize": "characters"}),
    )

    @classmethod
    def for_account(cls, account: Account, data: Any = None) -> LimitsForm:
        initial = {name: getattr(account, name) for name in RISK_NUMBER_FIELDS}
        return cls(data=data, initial=initial)

    def changes(self, account: Account) -> dict[str, Any]:
        """The settings this submission changes, in the account services' names and shapes."""
        changed: dict[str, Any] = {}
        for name in RISK_NUMBER_FIELDS:
            new, old = self.cleaned_data.get(name), getattr(account, name)
            if new != old:
                changed[name] = new
        block = (self.cleaned_data.get("block_instrument") or "").strip().upper()
        if block and block not in (account.blocked_instruments or []):
            changed["blocked_instruments"] = [*(account.blocked_instruments or []), block]
        return changed


class ConsentForm(forms.Form):
    """Giving consent needs the box ticked: the client agrees to the terms of that version."""

    agree = forms.BooleanField(
        required=True,
        label="I agree that the desk's trades are copied into this account under these terms",
        error_messages={"required": "Tick the box to give your consent."},
    )
