"""Forms of the staff dashboards: filters (GET) and confirmations (POST)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

from replication.dashboard.selectors import LogFilters
from replication.models import MappingStatus

ON_OFF = (("on", "on"), ("off", "off"))


class LogFilterForm(forms.Form):
    day = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    instrument = forms.CharField(
        required=False,
        max_length=80,
        widget=forms.TextInput(attrs={"placeholder": "NIFTY or NFO:NIFTY25DECFUT"}),
    )
    status = forms.ChoiceField(
        required=False, choices=[("", "any child order status"), *MappingStatus.choices]
    )

    def filters(self) -> LogFilters:
        """The cleaned filters; an invalid form filters nothing."""
        if not self.is_valid():
            return LogFilters()
        data = self.cleaned_data
        return LogFilters(day=data["day"], instrument=data["instrument"].strip(), status=data["status"])


class ControlForm(forms.Form):
    value = forms.ChoiceField(choices=ON_OFF)

    @property
    def turn_on(self) -> bool:
        return bool(self.is_valid() and self.cleaned_data["value"] == "on")


class CorrectionForm(forms.Form):
    """Which drift to correct (GET: the confirmation page) and the quantity that was shown (POST)."""

    child = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    exchange = forms.CharField(max_length=8, widget=forms.HiddenInput)
    tradingsymbol = forms.CharField(max_length=64, widget=forms.HiddenInput)
    product = forms.CharField(max_length=8, widget=forms.HiddenInput)
    confirmed_quantity = forms.IntegerField(required=False, widget=forms.HiddenInput)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "why (kept in the audit trail)", "size": 48}),
    )


class ChartsForm(forms.Form):
    PERIODS = (("1", "last 24 hours"), ("7", "last 7 days"), ("30", "last 30 days"))
    days = forms.ChoiceField(choices=PERIODS, required=False)

    @property
    def days_value(self) -> str:
        return (self.cleaned_data.get("days") if self.is_valid() else "") or "7"

    def since(self) -> datetime:
        return timezone.now() - timedelta(days=int(self.days_value))
