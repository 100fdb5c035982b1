"""Child detail (settings, capital, positions, P&L, orders, timeline) and flattening a child."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.generic import TemplateView

from accounts.models import Account, Role
from replication.dashboard import charts, selectors
from replication.dashboard.forms import ReasonForm
from replication.dashboard.views.base import StaffRequiredMixin, paginate, querystring
from replication.services import CorrectionError, child_flatten, flatten_plan

ORDERS_PER_PAGE = 25
EVENTS_PER_PAGE = 30
LATENCY_DAYS = 7


class ChildDetailView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/child_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        try:
            child = selectors.child_get(pk=self.kwargs["pk"])
        except Account.DoesNotExist as exc:
            raise Http404("no such child account") from exc
        request = self.request
        curve = selectors.capital_curve(child=child)
        return {
            **super().get_context_data(**kwargs),
            "child": child,
            "sizing_capital": selectors.sizing_capital(child),
            "capital_chart": charts.time_series(
                curve, label="Capital over the last 30 days", empty="no margin snapshot yet", width=560
            ),
            "broker": selectors.broker_positions(child=child),
            "orders": paginate(selectors.child_orders(child=child), request, per_page=ORDERS_PER_PAGE),
            "events": paginate(
                selectors.child_events(child=child), request, per_page=EVENTS_PER_PAGE, param="epage"
            ),
            "orders_query": querystring(request.GET, page=None),
            "events_query": querystring(request.GET, epage=None),
            "nav": "overview",
        }


class ChildFlattenView(StaffRequiredMixin, TemplateView):
    """GET: the closing orders a flatten would plan, and a reason field. POST: plan them."""

    template_name = "dashboard/flatten_confirm.html"

    def child(self) -> Account:
        return get_object_or_404(Account, pk=self.kwargs["pk"], role=Role.CHILD)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        child = self.child()
        context: dict[str, Any] = {**super().get_context_data(**kwargs), "child": child, "nav": "reconcile"}
        try:
            context["plan"] = flatten_plan(child=child, clients=selectors.broker_clients())
        except CorrectionError as exc:
            context["error"] = str(exc)
        context["form"] = kwargs.get("form") or ReasonForm()
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        child = self.child()
        form = ReasonForm(request.POST)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form))
        try:
            created = child_flatten(
                child=child,
                actor=self.actor(),
                reason=form.cleaned_data["reason"],
                clients=selectors.broker_clients(),
            )
        except CorrectionError as exc:
            messages.error(request, f"Not flattened: {exc}")
            return HttpResponseRedirect(reverse("dashboard:child_flatten", args=[child.pk]))
        summary = ", ".join(f"{m.side} {m.quantity} {m.tradingsymbol}" for m in created)
        messages.success(request, f"Flatten planned ({summary}); the orders go on the next tick.")
        return HttpResponseRedirect(reverse("dashboard:child", args=[child.pk]))
