"""URL configuration: sign-in, admin, REST API, staff dashboards, Kite login and postbacks."""

from django.contrib import admin
from django.urls import include, path

from accounts import login_views
from pms import ops

urlpatterns = [
    # Before the admin's own URLs: the admin login is throttled and sends clients to /login/.
    path("admin/login/", login_views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", include("pms.api_urls")),
    path("staff/", include("replication.dashboard.urls")),
    path("accounts/", include("accounts.kite.urls")),
    path("login/", login_views.SignInView.as_view(), name="login"),
    path("logout/", login_views.SignOutView.as_view(), name="logout"),
    path("my/", login_views.MyAccountsView.as_view(), name="my-accounts"),
    # Production shape (issue 14): a supervisor's health check and Prometheus' scrape (pms/ops.py).
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
]
