"""Charts: per-child success rate and the latency histogram (server-rendered SVG)."""

from __future__ import annotations

from typing import Any

from django.views.generic import TemplateView

from replication.dashboard import charts, selectors
from replication.dashboard.forms import ChartsForm
from replication.dashboard.views.base import StaffRequiredMixin


class ChartsView(StaffRequiredMixin, TemplateView):
    template_name = "dashboard/charts.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        form = ChartsForm(self.request.GET or None)
        since = form.since()
        success = selectors.success_by_child(since=since)
        latency = selectors.latencies(since=since)
        return {
            **super().get_context_data(**kwargs),
            "form": form,
            "days": form.days_value,
            "periods": ChartsForm.PERIODS,
            "success": success,
            "success_chart": charts.success_bars([(r.name, r.accepted, r.refused) for r in success]),
            "latency_chart": charts.latency_histogram(latency),
            "latency_count": len(latency),
            "p50": charts.percentile(latency, 50),
            "p95": charts.percentile(latency, 95),
            "nav": "charts",
        }
