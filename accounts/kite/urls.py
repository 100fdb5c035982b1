"""Kite login redirect and callback (mounted under /accounts/, namespace `kite`, by pms/urls.py).

Kite's order postback is order flow: its route is replication.postbacks.urls, in the same namespace.
"""

from django.urls import URLPattern, URLResolver, path

from accounts.kite.views import KiteCallbackView, KiteLoginView

app_name = "kite"
urlpatterns: list[URLPattern | URLResolver] = [
    path("<int:pk>/kite/login/", KiteLoginView.as_view(), name="login"),
    path("kite/callback/", KiteCallbackView.as_view(), name="callback"),
]
