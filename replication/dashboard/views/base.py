"""The staff gate and small helpers shared by the dashboard views."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import UserPassesTestMixin
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponseBase, QueryDict
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.generic.base import ContextMixin

from replication.controls import engine_control_get
from replication.dashboard.selectors import display_zone


class StaffRequiredMixin(UserPassesTestMixin, ContextMixin):
    """Active staff only: anonymous users are sent to the login page, everyone else gets 403.

    Pages render in the display time zone (Asia/Kolkata); stored times stay UTC. Every page gets
    the kill switches (`engine_control`) for the banner.
    """

    request: HttpRequest

    def test_func(self) -> bool:
        user = self.request.user
        return bool(user.is_authenticated and user.is_active and user.is_staff)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        timezone.activate(display_zone())
        try:
            response: HttpResponseBase = super().dispatch(request, *args, **kwargs)
            if isinstance(response, TemplateResponse) and not response.is_rendered:
                response.render()  # while the display time zone is active
            return response
        finally:
            timezone.deactivate()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("engine_control", engine_control_get())
        return context

    def actor(self) -> str:
        return self.request.user.get_username()


def paginate(items: Any, request: HttpRequest, *, per_page: int, param: str = "page") -> Page[Any]:
    return Paginator(items, per_page).get_page(request.GET.get(param))


def querystring(params: QueryDict, **overrides: Any) -> str:
    """The current query string with some parameters replaced or removed (None)."""
    query = params.copy()
    for name, value in overrides.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = str(value)
    return query.urlencode()
