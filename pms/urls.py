"""URL configuration: home, sign-in and password reset, admin, REST API, staff dashboards, the client
portal, Kite login and postbacks."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import login_views
from accounts.kite import urls as kite_login_urls
from pms import ops
from replication.postbacks import urls as kite_postback_urls

# Kite's URLs, one namespace (`kite:login`, `kite:callback`, `kite:postback`): the daily login is
# accounts', the order postback is the engine's order flow.
kite_urls = ([*kite_login_urls.urlpatterns, *kite_postback_urls.urlpatterns], kite_login_urls.app_name)

urlpatterns = [
    path("", login_views.home, name="home"),
    # Before the admin's own URLs: the admin login is throttled and sends clients to /login/.
    path("admin/login/", login_views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", include("pms.api_urls")),
    path("staff/", include("replication.dashboard.urls")),
    path("accounts/", include(kite_urls)),
    path("login/", login_views.SignInView.as_view(), name="login"),
    path("logout/", login_views.SignOutView.as_view(), name="logout"),
    path("my/", include("accounts.portal.urls")),
    # Password reset by email (Django's views, the product's templates in templates/registration/).
    path("password-reset/", login_views.ResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # Production shape (issue 14): a supervisor's health check and Prometheus' scrape (pms/ops.py).
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
]
