"""URL configuration: admin, REST API, staff dashboards, Kite login and postbacks."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("pms.api_urls")),
    path("staff/", include("replication.dashboard.urls")),
    path("accounts/", include("accounts.kite.urls")),
]
