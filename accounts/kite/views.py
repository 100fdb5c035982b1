"""Kite daily login (redirect and callback). Thin: the work is in services.

Login: `GET /accounts/<id>/kite/login/` (staff or the account's owner) sends the browser to Kite
with a one-time `state` remembered in the session; Kite sends it back to
`GET /accounts/kite/callback/?request_token=...&status=success&account=<id>&state=...`, the URL
registered for the app. Order postbacks are order flow: replication.postbacks.views.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views import View

from accounts.kite.services import account_kite_complete_login, account_kite_login_url
from accounts.models import Account, Broker
from accounts.validation import AccountError

logger = logging.getLogger(__name__)

SESSION_KEY = "kite_login_states"  # state -> account id, for logins started in this browser session
MAX_PENDING = 8
TEMPLATE = "kite/login_result.html"


def _account_for(request: HttpRequest, pk: int) -> Account:
    """The Kite account `pk` when the user is staff or its owner; 404 otherwise (existence not revealed)."""
    account = Account.objects.filter(pk=pk, broker=Broker.KITE).first()
    user = request.user
    if account is None or not (
        user.is_staff or (account.owner_id is not None and account.owner_id == user.pk)
    ):
        raise Http404("no such Kite account")
    return account


def _page(
    request: HttpRequest, *, title: str, message: str, status: int, account: Account | None = None
) -> HttpResponse:
    context: dict[str, Any] = {"title": title, "message": message, "account": account, "ok": status == 200}
    if account is not None and account.token_expires_at is not None:
        context["expires_at"] = account.token_expires_at.astimezone(ZoneInfo(settings.DISPLAY_TIME_ZONE))
    return render(request, TEMPLATE, context, status=status)


class KiteLoginView(LoginRequiredMixin, View):
    """Start the daily login: redirect to Kite's login page for this account's app."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        account = _account_for(request, pk)
        state = secrets.token_urlsafe(16)
        try:
            url = account_kite_login_url(
                account=account, redirect_params={"account": str(account.pk), "state": state}
            )
        except AccountError as exc:
            return _page(
                request, title="Cannot start the Kite login", message=exc.message, status=400, account=account
            )
        pending: dict[str, int] = dict(request.session.get(SESSION_KEY, {}))
        pending[state] = account.pk
        request.session[SESSION_KEY] = dict(list(pending.items())[-MAX_PENDING:])
        return HttpResponseRedirect(url)


class KiteCallbackView(LoginRequiredMixin, View):
    """Kite's redirect after the login: exchange the request token and store the session."""

    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET
        pending: dict[str, int] = dict(request.session.get(SESSION_KEY, {}))
        account_pk = pending.pop(params.get("state", ""), None)
        request.session[SESSION_KEY] = pending  # a state works once
        if params.get("status") != "success":
            return _page(
                request,
                title="Kite login cancelled",
                message="Kite did not complete the login; nothing was changed. Start it again when ready.",
                status=200 if params.get("status") == "cancelled" else 400,
            )
        if account_pk is None:
            return _page(
                request,
                title="Kite login not recognised",
                message=(
                    "This login was not started from this browser session (or was already used), so "
                    "nothing was changed. Start it again from the account's Kite login link. If you "
                    "started it with `manage.py kite_login`, paste this page's address there."
                ),
                status=400,
            )
        account = _account_for(request, account_pk)
        actor = f"kite-login:{request.user.get_username()}"
        try:
            account = account_kite_complete_login(
                account=account, request_token=params.get("request_token", ""), actor=actor
            )
        except AccountError as exc:
            return _page(
                request, title="Kite login refused", message=exc.message, status=400, account=account
            )
        return _page(
            request,
            title="Kite login complete",
            message=(
                f"Account {account.broker_user_id} is logged in for today "
                f"(status: {account.get_status_display()})."
            ),
            status=200,
            account=account,
        )
