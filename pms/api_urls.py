"""REST API (/api/v1/) and its OpenAPI schema (/api/schema/) and interactive docs (/api/docs/).

The schema and the docs need a signed-in user (session or token), like the API itself. Any other
path under /api/v1/ answers a JSON 404 in the API's error shape, not Django's HTML page.
"""

from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAuthenticated

from accounts.api.views import api_not_found

app_name = "api"

v1: list[URLPattern | URLResolver] = [
    path("", include("accounts.api.urls")),
    path("", include("replication.api.urls")),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/", include((v1, "v1"))),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[IsAuthenticated]),
        name="docs",
    ),
    re_path(r"^v1/", api_not_found, name="not-found"),
]
