"""/api/v1/ routes of the replication API."""

from django.urls import URLPattern, URLResolver, path

from replication.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("replication/events", views.MasterEventListView.as_view(), name="replication-events"),
    path(
        "replication/allocations/<int:pk>",
        views.AllocationDetailView.as_view(),
        name="replication-allocation",
    ),
    path("accounts/<int:pk>/positions", views.AccountPositionsView.as_view(), name="account-positions"),
]
