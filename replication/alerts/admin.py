"""Alert subscriptions (staff choose channels and kinds; a client's subscription only ever hears of
the accounts it owns) and read-only alerts and deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from replication.alerts.models import Alert, AlertDelivery, AlertSubscription

if TYPE_CHECKING:  # django-stubs' generic ModelAdmin is not subscriptable at run time
    SubscriptionAdminBase = admin.ModelAdmin[AlertSubscription]
    AlertAdminBase = admin.ModelAdmin[Alert]
    DeliveryAdminBase = admin.ModelAdmin[AlertDelivery]
else:
    SubscriptionAdminBase = AlertAdminBase = DeliveryAdminBase = admin.ModelAdmin


@admin.register(AlertSubscription)
class AlertSubscriptionAdmin(SubscriptionAdminBase):
    list_display = ("user", "channel", "address", "kinds", "enabled", "created_at")
    list_filter = ("channel", "enabled")
    search_fields = ("user__username", "user__email", "address")
    raw_id_fields = ("user",)


@admin.register(Alert)
class AlertAdmin(AlertAdminBase):
    list_display = ("opened_at", "kind", "scope", "subject", "suppressed", "closed_at")
    list_filter = ("kind",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(DeliveryAdminBase):
    list_display = (
        "created_at",
        "alert",
        "summary",
        "channel",
        "address",
        "status",
        "attempts",
        "last_error",
    )
    list_filter = ("status", "channel", "summary")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
