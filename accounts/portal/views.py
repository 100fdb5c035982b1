"""The client portal's pages (/my/): a client's own accounts, one account's day, and its actions.

- `GET /my/`: the user's own accounts (status, consent, today's copy trades, the Kite login when due).
- `GET /my/accounts/<id>/`: today's copy trades, positions entitled against held, the P&L of the
  replicated trades, limits (tighten only), pause/resume, consent, the broker's daily login.
- `POST /my/accounts/<id>/limits/`, `.../pause/`, `.../resume/`, `.../consent/`,
  `.../consent/withdraw/`: the actions, each through an audited account service with the
  client's username as the actor, and the API's client rules (`accounts.api.permissions`): limits
  only tighten, a resume only of a pause the client made.

Any account id that is not the user's own answers 404, whatever the method, before anything else
is looked at. Anonymous users are sent to the login page.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.generic import TemplateView

from accounts.api.permissions import client_settings_refusals, client_status_refusal
from accounts.api.selectors import paper_instruments_unknown
from accounts.models import Account, AccountStatus, Broker
from accounts.portal import selectors
from accounts.portal.forms import BLOCK_LABEL, LIMIT_LABELS, ConsentForm, LimitsForm
from accounts.services import (
    AccountError,
    account_give_consent,
    account_set_status,
    account_settings_validate,
    account_update_settings,
    consent_version_current,
)
from accounts.services.portal import account_withdraw_consent
from pms.money import rupees

PAUSED_REASON = "paused by the client in the portal"
RESUMED_REASON = "resumed by the client in the portal"


def _refusal_words(name: str, account: Account) -> str:
    if name == "blocked_instruments":
        return f"{BLOCK_LABEL} can only be added to; ask the desk to unblock one."
    label = LIMIT_LABELS.get(name, name)
    now = getattr(account, name, None)
    if now is None:
        shown = "no limit"
    elif isinstance(now, Decimal):
        shown = rupees(now, places=0 if now == now.to_integral_value() else 2)
    else:
        shown = str(now)
    return (
        f"{label} can only be lowered, never raised or removed (it is {shown} now). "
        "Ask the desk to loosen a limit."
    )


@method_decorator(never_cache, name="dispatch")
class PortalView(LoginRequiredMixin, View):
    """Signed-in users only; pages in the display time zone (stored times stay UTC)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        timezone.activate(selectors.display_zone())
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            timezone.deactivate()


class AccountMixin(PortalView):
    """The user's own account from the URL, or 404 (another client's account looks absent), found
    before the method is judged: any method on another client's account id answers 404."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated:
            self.request, self.kwargs = request, kwargs
            self.own_account()
        return super().dispatch(request, *args, **kwargs)

    def own_account(self, *, lock: bool = False) -> Account:
        try:
            return selectors.portal_account_get(user=self.request.user, pk=self.kwargs["pk"], lock=lock)
        except Account.DoesNotExist:
            raise Http404("No such account.") from None


def _login_url(account: Account) -> str | None:
    return reverse("kite:login", args=[account.pk]) if account.broker == Broker.KITE else None


class HomeView(PortalView, TemplateView):
    template_name = "portal/home.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        now = timezone.now()
        rows = [
            {
                "account": account,
                "login_due": selectors.login_due(account, now),
                "login_url": _login_url(account),
                "trades_today": getattr(account, "trades_today", 0),  # annotated by the selector
            }
            for account in selectors.portal_accounts(user=self.request.user, now=now)
        ]
        context.update(rows=rows, nav="portal")
        return context


def account_page(
    request: HttpRequest, account: Account, limits_form: LimitsForm, *, status: int = 200
) -> HttpResponse:
    """The account page; reads the broker for last prices (P&L): never call it inside a transaction."""
    now = timezone.now()
    username = request.user.get_username()
    paused = account.status in (AccountStatus.PAUSED, AccountStatus.HALTED)
    resume_refusal = (
        client_status_refusal(account=account, status=AccountStatus.ACTIVE, username=username)
        if paused
        else None
    )
    context = {
        "nav": "portal",
        "account": account,
        "trades": selectors.copy_trades_today(account=account, now=now),
        "positions": selectors.positions_entitled_held(account=account),
        "pnl": selectors.replicated_pnl(account=account, now=now),
        "limits_form": limits_form,
        "consent_form": ConsentForm(),
        "consent_version": consent_version_current(),
        "login_due": selectors.login_due(account, now),
        "login_url": _login_url(account),
        "can_pause": account.status in (AccountStatus.ACTIVE, AccountStatus.NEEDS_LOGIN),
        "can_resume": paused and resume_refusal is None,
        "resume_refusal": resume_refusal,
    }
    return render(request, "portal/account.html", context, status=status)


class AccountView(AccountMixin):
    """One account's day: copy trades, positions, P&L, limits, status, consent, daily login."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        account = self.own_account()
        return account_page(request, account, LimitsForm.for_account(account))


class AccountActionView(AccountMixin):
    """A POST-only action on the user's own account: 404 for anyone else's, whatever the method."""

    http_method_names = ["post"]

    def back(self) -> HttpResponse:
        return redirect("portal:account", pk=self.kwargs["pk"])


class LimitsView(AccountActionView):
    """Tighten the limits: lower a number limit, set one where there is none, block an instrument."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = LimitsForm.for_account(self.own_account(), data=request.POST)
        if form.is_valid():
            changes = self.apply(form, username=request.user.get_username())
            if changes is not None:
                if changes:
                    messages.success(
                        request, "Your limits are tighter now: " + ", ".join(_changed_words(changes)) + "."
                    )
                else:
                    messages.info(request, "Nothing changed: your limits are as they were.")
                return self.back()
        # Refused: the page again with the reasons, rendered outside the transaction (broker reads).
        return account_page(request, self.own_account(), form, status=400)

    def apply(self, form: LimitsForm, *, username: str) -> dict[str, Any] | None:
        """Write the tightened limits (audited); None with the form's errors added when refused."""
        with transaction.atomic():
            account = self.own_account(lock=True)
            changes = form.changes(account)
            if not changes:
                return changes
            try:
                cleaned = account_settings_validate(account=account, **changes)
            except AccountError as exc:
                for name, text in exc.fields.items():
                    form.add_error(_form_field(name), text)
                return None
            unknown = _unknown_instruments(account, cleaned)
            if unknown:
                form.add_error("block_instrument", f"Unknown instrument: {', '.join(unknown)}")
                return None
            refusals = client_settings_refusals(account=account, cleaned=cleaned, username=username)
            for name in refusals:
                form.add_error(_form_field(name), _refusal_words(name, account))
            if refusals:
                return None
            account_update_settings(account=account, actor=username, **changes)
        return changes


def _form_field(name: str) -> str | None:
    if name in LIMIT_LABELS:
        return name
    return "block_instrument" if name == "blocked_instruments" else None


def _unknown_instruments(account: Account, cleaned: dict[str, Any]) -> list[str]:
    """Paper accounts: a newly blocked instrument must exist on the paper exchange (as in the API)."""
    if account.broker != Broker.PAPER:
        return []
    added = [
        key for key in cleaned.get("blocked_instruments") or [] if key not in account.blocked_instruments
    ]
    return [key[:40] for key in paper_instruments_unknown(keys=added)[:5]]


def _changed_words(changes: dict[str, Any]) -> list[str]:
    words = []
    for name, value in changes.items():
        if name == "blocked_instruments":
            words.append(f"blocked {value[-1]}")
        else:
            words.append(f"{LIMIT_LABELS[name].split(' (')[0].lower()} {value}")
    return words


class PauseView(AccountActionView):
    """Pause the account: no new entries; exits continue."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.user.get_username()
        with transaction.atomic():
            account = self.own_account(lock=True)
            if account.status == AccountStatus.PAUSED:
                messages.info(request, "The account is already paused.")
                return self.back()
            refusal = client_status_refusal(account=account, status=AccountStatus.PAUSED, username=username)
            if refusal:
                messages.error(request, f"Not paused: {refusal}.")
                return self.back()
            account_set_status(
                account=account, status=AccountStatus.PAUSED, actor=username, reason=PAUSED_REASON
            )
        messages.success(request, "Paused: no new trades are copied; exits of what you hold still go.")
        return self.back()


class ResumeView(AccountActionView):
    """Resume a pause (or halt) the client made itself."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.user.get_username()
        with transaction.atomic():
            account = self.own_account(lock=True)
            if account.status not in (AccountStatus.PAUSED, AccountStatus.HALTED):
                messages.info(request, "The account is not paused: nothing to resume.")
                return self.back()
            refusal = client_status_refusal(account=account, status=AccountStatus.ACTIVE, username=username)
            if refusal:
                messages.error(request, f"Not resumed: {refusal}.")
                return self.back()
            try:
                account_set_status(
                    account=account, status=AccountStatus.ACTIVE, actor=username, reason=RESUMED_REASON
                )
            except AccountError as exc:
                messages.error(request, f"Not resumed: {exc.message}.")
                return self.back()
        messages.success(request, "Resumed: the desk's new trades are copied again.")
        return self.back()


class ConsentGiveView(AccountActionView):
    """Give consent under the current terms version (the box must be ticked)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        account = self.own_account()
        form = ConsentForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Consent not given: tick the box to agree to the terms.")
            return self.back()
        version = consent_version_current()
        if account.has_consent and account.consent_version == version:
            messages.info(request, f"Your consent (terms {version}) is already recorded.")
            return self.back()
        account_give_consent(account=account, version=version, actor=request.user.get_username())
        messages.success(request, f"Consent given (terms {version}): the desk's new trades are copied.")
        return self.back()


class ConsentWithdrawView(AccountActionView):
    """Withdraw consent: no new entries; exits of what the engine placed still go."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        account = self.own_account()
        if not account.has_consent:
            messages.info(request, "Your consent is not given: nothing to withdraw.")
            return self.back()
        account_withdraw_consent(account=account, actor=request.user.get_username())
        messages.success(
            request,
            "Consent withdrawn: no new trades are copied. Exits of positions the desk opened for you "
            "still go, so you are not left holding them.",
        )
        return self.back()
