"""URL configuration: admin, REST API, Kite login and postbacks."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("pms.api_urls")),
    path("accounts/", include("accounts.kite.urls")),
]
