"""Kite's order postback route. pms/urls.py mounts it under /accounts/ in the `kite` namespace,
beside the daily login's routes (accounts.kite.urls): the URL registered with Kite is unchanged."""

from django.urls import URLPattern, URLResolver, path

from replication.postbacks.views import KitePostbackView

urlpatterns: list[URLPattern | URLResolver] = [
    path("kite/postback/", KitePostbackView.as_view(), name="postback"),
]
