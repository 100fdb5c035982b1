"""Overview: engine state, master funds, kill switches, children, accounts needing login."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.views.generic import TemplateView

from accounts.models import Account
from brokers.capabilities import SessionKind, capabilities_for
from replication.controls import FLAGS, EngineControlError, engine_control_get, engine_control_update
from replication.dashboard import charts, selectors
from replication.dashboard.forms import ControlForm
from replication.dashboard.views.base import StaffRequiredMixin, paginate
from replication.models import EngineControl

CHILDREN_PER_PAGE = 25
NEEDS_LOGIN_SHOWN = 50

SWITCH_LABELS = {
    "paused": "Global pause",
    "halted": "Halt",
    "dry_run": "Dry run",
    "approval_mode": "Approval mode",
}
SWITCH_EFFECTS = {
    "paused": "No new entries for any child; exits, follow-ups and sync continue.",
    "halted": "Nothing is sent to any broker: entries, exits and corrective orders all wait.",
    "dry_run": "Every order is planned and recorded but none is sent.",
    "approval_mode": "New allocations wait on the reconciliation page for a staff approval.",
}


@dataclass(frozen=True, slots=True)
class Switch:
    flag: str
    label: str
    on: bool
    effect: str


def switches(control: EngineControl) -> list[Switch]:
    return [Switch(flag, SWITCH_LABELS[flag], getattr(control, flag), SWITCH_EFFECTS[flag]) for flag in FLAGS]


def login_url(account: Account) -> str:
    """Where staff send the account holder to log in again (a broker whose login is interactive:
    its login page, Kite's /accounts/<id>/kite/login/), or the account in the admin (a headless
    login's PIN and TOTP secret, or a broker without a login page)."""
    if capabilities_for(account.broker).session.interactive:
        try:
            return reverse(f"{account.broker}:login", args=[account.pk])
        except NoReverseMatch:  # the path every broker's login view takes (as the API and the email say)
            return f"/accounts/{account.pk}/{account.broker}/login/"
    return reverse("admin:accounts_account_change", args=[account.pk])


def login_label(account: Account) -> str:
    """The overview's login button, by the broker's session kind (never its name): a login link
    for an interactive login, the admin page of its PIN and TOTP secret for a headless one."""
    session = capabilities_for(account.broker).session
    if session.interactive:
        return "Log in"
    if session.kind is SessionKind.HEADLESS_TOTP:
        return "Check PIN and TOTP"
    return "Open"


@dataclass(frozen=True, slots=True)
class ChildRow:
    """One child of the overview's page: the account, the capital that sizes it, today's orders."""

    child: Account
    sizing_capital: Decimal | None
    orders: selectors.OrderStats


def overview_context(request: HttpRequest) -> dict[str, Any]:
    funds = selectors.master_funds()
    control = engine_control_get()
    needs_login = list(selectors.accounts_needing_login()[:NEEDS_LOGIN_SHOWN])
    children = paginate(selectors.child_list(), request, per_page=CHILDREN_PER_PAGE)
    stats = selectors.child_order_stats(child_ids=[c.pk for c in children])
    brokers = selectors.broker_order_stats()
    return {
        "engine": selectors.engine_state(),
        "funds": funds,
        "margin_chart": charts.time_series(
            funds.curve,
            label="Master used margin today",
            empty="no master snapshot today",
            width=420,
            height=170,
        ),
        "control": control,
        "switches": switches(control),
        "status_counts": selectors.child_status_counts(),
        "children": children,
        "child_rows": [
            ChildRow(c, selectors.sizing_capital(c), stats.get(c.pk, selectors.OrderStats()))
            for c in children
        ],
        # Success and latency by broker, once the children trade on more than one.
        "broker_stats": brokers if len(brokers) > 1 else [],
        "needs_login": [(a, login_url(a), login_label(a)) for a in needs_login],
    }


class OverviewView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/overview.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), **overview_context(self.request), "nav": "overview"}


class OverviewFragmentView(StaffRequiredMixin, TemplateView):
    """The live part of the overview, polled by htmx."""

    template_name = "dashboard/_overview_live.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), **overview_context(self.request)}


class ControlView(StaffRequiredMixin, TemplateView):
    """A kill switch: GET shows what the change does, POST makes it (audited by the service)."""

    template_name = "dashboard/control_confirm.html"

    def flag(self) -> str:
        flag = str(self.kwargs["flag"])
        if flag not in FLAGS:
            raise Http404(f"unknown engine switch {flag!r}")
        return flag

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        flag = self.flag()
        control = engine_control_get()
        form = ControlForm(self.request.GET or {"value": "off" if getattr(control, flag) else "on"})
        switch = next(s for s in switches(control) if s.flag == flag)
        return {
            **super().get_context_data(**kwargs),
            "switch": switch,
            "turn_on": form.turn_on,
            "form": form,
            "nav": "overview",
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        flag = self.flag()
        form = ControlForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose on or off.")
            return HttpResponseRedirect(reverse("dashboard:control", args=[flag]))
        try:
            engine_control_update(actor=self.actor(), **{flag: form.turn_on})
        except EngineControlError as exc:
            messages.error(request, str(exc))
        else:
            state = "on" if form.turn_on else "off"
            messages.success(request, f"{SWITCH_LABELS[flag]} is now {state}.")
        return HttpResponseRedirect(reverse("dashboard:overview"))
