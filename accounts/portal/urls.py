"""/my/ routes of the client portal (namespace `portal`, mounted by pms/urls.py)."""

from django.urls import URLPattern, URLResolver, path

from accounts.portal import views

app_name = "portal"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.HomeView.as_view(), name="home"),
    path("accounts/<int:pk>/", views.AccountView.as_view(), name="account"),
    path("accounts/<int:pk>/limits/", views.LimitsView.as_view(), name="limits"),
    path("accounts/<int:pk>/pause/", views.PauseView.as_view(), name="pause"),
    path("accounts/<int:pk>/resume/", views.ResumeView.as_view(), name="resume"),
    path("accounts/<int:pk>/consent/", views.ConsentGiveView.as_view(), name="consent"),
    path("accounts/<int:pk>/consent/withdraw/", views.ConsentWithdrawView.as_view(), name="consent_withdraw"),
]
