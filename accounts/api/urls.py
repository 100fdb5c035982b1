"""/api/v1/ routes of the accounts API."""

from django.urls import URLPattern, URLResolver, path

from accounts.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("auth/token", views.TokenObtainView.as_view(), name="auth-token"),
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
