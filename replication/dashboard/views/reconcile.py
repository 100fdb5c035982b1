"""Reconciliation: expected vs actual per child and instrument, corrective orders, approvals."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.generic import TemplateView

from accounts.models import Account, Role
from replication.dashboard import selectors
from replication.dashboard.forms import CorrectionForm, ReasonForm
from replication.dashboard.views.base import StaffRequiredMixin, paginate, querystring
from replication.models import Allocation, AllocationStatus
from replication.reconciliation import Grade
from replication.services import (
    AllocationDecisionError,
    CorrectionError,
    allocation_approve,
    allocation_reject,
    correction_plan,
    reconciliation_correct,
)

CHILDREN_PER_PAGE = 25
APPROVALS_PER_PAGE = 20
GRADE_FILTERS = ("drift", *(g.value for g in Grade))


class ReconcileView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/reconcile.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        request = self.request
        children = paginate(selectors.reconcile_children(), request, per_page=CHILDREN_PER_PAGE)
        rows = selectors.drift_rows(list(children.object_list))
        counts = Counter(r.drift.grade.value for r in rows)
        grade = request.GET.get("grade", "")
        if grade == "drift":
            rows = [r for r in rows if r.drift.grade != Grade.OK]
        elif grade in GRADE_FILTERS:
            rows = [r for r in rows if r.drift.grade == grade]
        return {
            **super().get_context_data(**kwargs),
            "children": children,
            "rows": rows,
            "counts": [(g.value, counts.get(g.value, 0)) for g in Grade],
            "grade": grade if grade in GRADE_FILTERS else "",
            "grade_filters": GRADE_FILTERS,
            "query": querystring(request.GET, page=None),
            "approvals_query": querystring(request.GET, apage=None),
            "approvals": paginate(
                selectors.awaiting_approval(), request, per_page=APPROVALS_PER_PAGE, param="apage"
            ),
            "reject_form": ReasonForm(),
            "nav": "reconcile",
        }


class CorrectionView(StaffRequiredMixin, TemplateView):
    """GET: exactly what the corrective order will send. POST: plan it (sent on the next tick)."""

    template_name = "dashboard/correct_confirm.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = {**super().get_context_data(**kwargs), "nav": "reconcile"}
        form = CorrectionForm(self.request.GET)
        if not form.is_valid():
            context["error"] = "Pick a row on the reconciliation page to correct."
            return context
        data = form.cleaned_data
        child = get_object_or_404(Account, pk=data["child"], role=Role.CHILD)
        context["child"] = child
        try:
            plan = correction_plan(
                child=child,
                exchange=data["exchange"],
                tradingsymbol=data["tradingsymbol"],
                product=data["product"],
                clients=selectors.broker_clients(),
            )
        except CorrectionError as exc:
            context["error"] = str(exc)
            return context
        context["plan"] = plan
        context["form"] = CorrectionForm(initial={**data, "confirmed_quantity": plan.signed_quantity})
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = CorrectionForm(request.POST)
        if not form.is_valid() or form.cleaned_data["confirmed_quantity"] is None:
            messages.error(request, "The correction was not confirmed; pick the row again.")
            return HttpResponseRedirect(reverse("dashboard:reconcile"))
        data = form.cleaned_data
        child = get_object_or_404(Account, pk=data["child"], role=Role.CHILD)
        try:
            mapping = reconciliation_correct(
                child=child,
                exchange=data["exchange"],
                tradingsymbol=data["tradingsymbol"],
                product=data["product"],
                actor=self.actor(),
                confirmed_quantity=data["confirmed_quantity"],
                clients=selectors.broker_clients(),
            )
        except CorrectionError as exc:
            messages.error(request, f"No corrective order: {exc}")
        else:
            when = (
                "recorded as a dry run (not sent)" if mapping.status == "dry_run" else "sent on the next tick"
            )
            messages.success(
                request,
                f"Corrective order {mapping.tag} planned for {child.display_name or child.broker_user_id}: "
                f"{mapping.side} {mapping.quantity} {mapping.exchange}:{mapping.tradingsymbol} "
                f"{mapping.product} — {when}.",
            )
        return HttpResponseRedirect(reverse("dashboard:reconcile"))


class _AllocationDecisionView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/allocation_decide.html"
    decision = ""

    def allocation(self) -> Allocation:
        return get_object_or_404(Allocation.objects.select_related("master", "tick"), pk=self.kwargs["pk"])

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        allocation = self.allocation()
        mappings = allocation.mappings.select_related("child").order_by("child_id", "slice_no")
        return {
            **super().get_context_data(**kwargs),
            "allocation": allocation,
            "mappings": mappings,
            "waiting": allocation.status == AllocationStatus.AWAITING_APPROVAL,
            "decision": self.decision,
            "form": ReasonForm() if self.decision == "reject" else None,
            "nav": "reconcile",
        }


class AllocationApproveView(_AllocationDecisionView):
    decision = "approve"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        allocation = self.allocation()
        try:
            allocation_approve(allocation=allocation, actor=self.actor())
        except AllocationDecisionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, f"Allocation {allocation.pk} approved: its child orders go on the next tick."
            )
        return HttpResponseRedirect(reverse("dashboard:reconcile"))


class AllocationRejectView(_AllocationDecisionView):
    decision = "reject"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        allocation = self.allocation()
        form = ReasonForm(request.POST)
        if not form.is_valid():
            messages.error(request, "A reason is required to reject an allocation.")
            return HttpResponseRedirect(reverse("dashboard:reject", args=[allocation.pk]))
        try:
            allocation_reject(allocation=allocation, actor=self.actor(), reason=form.cleaned_data["reason"])
        except AllocationDecisionError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Allocation {allocation.pk} rejected: its child orders are withdrawn.")
        return HttpResponseRedirect(reverse("dashboard:reconcile"))
