"""Staff dashboards (/staff/): every view is staff-only (anonymous → login, others → 403)."""

from django.urls import URLPattern, URLResolver, path

from replication.dashboard import views

app_name = "dashboard"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.OverviewView.as_view(), name="overview"),
    path("live/overview/", views.OverviewFragmentView.as_view(), name="overview_live"),
    path("controls/<slug:flag>/", views.ControlView.as_view(), name="control"),
    path("log/", views.LogView.as_view(), name="log"),
    path("log/live/", views.LogFragmentView.as_view(), name="log_live"),
    path("log/export.csv", views.LogCsvView.as_view(), name="log_csv"),
    path("reconcile/", views.ReconcileView.as_view(), name="reconcile"),
    path("reconcile/correct/", views.CorrectionView.as_view(), name="correct"),
    path("allocations/<int:pk>/approve/", views.AllocationApproveView.as_view(), name="approve"),
    path("allocations/<int:pk>/reject/", views.AllocationRejectView.as_view(), name="reject"),
    path("children/<int:pk>/", views.ChildDetailView.as_view(), name="child"),
    path("children/<int:pk>/flatten/", views.ChildFlattenView.as_view(), name="child_flatten"),
    path("charts/", views.ChartsView.as_view(), name="charts"),
]
