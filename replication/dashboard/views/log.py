"""Replication log: master event → allocation → every child order; filters and CSV export."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.views import View
from django.views.generic import ListView

from replication.dashboard import selectors
from replication.dashboard.forms import LogFilterForm
from replication.dashboard.spreadsheet import csv_row
from replication.dashboard.views.base import StaffRequiredMixin, querystring
from replication.models import Allocation

ALLOCATIONS_PER_PAGE = 20

if TYPE_CHECKING:
    AllocationListView = ListView[Allocation]
else:  # ListView is generic only in django-stubs
    AllocationListView = ListView


class _Echo:
    """A write-only file for csv.writer that hands each line back (streamed, never buffered whole)."""

    def write(self, value: str) -> str:
        return value


class LogView(StaffRequiredMixin, AllocationListView):
    template_name = "dashboard/log.html"
    paginate_by = ALLOCATIONS_PER_PAGE

    def form(self) -> LogFilterForm:
        if not hasattr(self, "_form"):
            self._form = LogFilterForm(self.request.GET or None)
        return self._form

    def get_queryset(self) -> QuerySet[Allocation]:
        return selectors.allocation_log(self.form().filters())

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        params = self.request.GET
        context.update(
            form=self.form(),
            groups=selectors.log_groups(context["page_obj"].object_list),
            query=querystring(params),
            filters_query=querystring(params, page=None),
            filtered=any(params.get(k) for k in ("day", "instrument", "status")),
            nav="log",
        )
        return context


class LogFragmentView(LogView):
    """The log table alone, polled by htmx with the page's filters."""

    template_name = "dashboard/_log_table.html"


class LogCsvView(StaffRequiredMixin, View):
    """Every child order of the filtered allocations as CSV (not paginated, streamed).

    Text cells that a spreadsheet would run as a formula (a client's display name "=HYPERLINK(...)",
    a broker's message) are written as text; numbers as numbers.
    """

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> StreamingHttpResponse:
        filters = LogFilterForm(request.GET or None).filters()
        writer = csv.writer(_Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(selectors.CSV_HEADER)
            for row in selectors.log_csv_rows(filters):
                yield writer.writerow(csv_row(row))

        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="replication-log-{stamp}.csv"'
        return response
