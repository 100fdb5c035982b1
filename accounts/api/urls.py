"""/api/v1/ routes of the accounts API."""

from django.urls import URLPattern, URLResolver, path, re_path

from accounts.api import views
from accounts.api.tokens import views as token_views

urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/token", views.TokenObtainView.as_view(), name="auth-token"),
    path("auth/tokens", token_views.TokenListView.as_view(), name="auth-token-list"),
    re_path(  # a token's id is knox's digest of it: 128 hex digits
        r"^auth/tokens/(?P<pk>[0-9a-f]{128})$",
        token_views.TokenRevokeView.as_view(),
        name="auth-token-revoke",
    ),
    path("accounts", views.AccountListView.as_view(), name="account-list"),
    path("accounts/link", views.AccountLinkView.as_view(), name="account-link"),
    path("accounts/<int:pk>", views.AccountDetailView.as_view(), name="account-detail"),
    path("accounts/<int:pk>/consent", views.AccountConsentView.as_view(), name="account-consent"),
    path(
        "accounts/<int:pk>/promote-master",
        views.AccountPromoteMasterView.as_view(),
        name="account-promote-master",
    ),
]
