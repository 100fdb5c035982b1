"""Kite login redirect and callback, and order postbacks (mounted under /accounts/)."""

from django.urls import URLPattern, URLResolver, path

from accounts.kite.views import KiteCallbackView, KiteLoginView, KitePostbackView

app_name = "kite"
urlpatterns: list[URLPattern | URLResolver] = [
    path("<int:pk>/kite/login/", KiteLoginView.as_view(), name="login"),
    path("kite/callback/", KiteCallbackView.as_view(), name="callback"),
    path("kite/postback/", KitePostbackView.as_view(), name="postback"),
]
