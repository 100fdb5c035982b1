"""Replication state in the admin: read-only inspection, plus the engine kill switches (audited)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from brokers.admin import ReadOnlyAdmin as BaseReadOnlyAdmin
from replication.controls import FLAGS, engine_control_update
from replication.models import (
    Allocation,
    EngineControl,
    MarginSnapshot,
    MasterOrder,
    MasterPosition,
    OrchestratorLease,
    OrderMapping,
    ReplicationEvent,
    TickRun,
)


class ReadOnlyAdmin(BaseReadOnlyAdmin):
    """Inspection only: the engine writes these rows, never the admin."""

    list_per_page = 100
    show_full_result_count = False  # no COUNT(*) over large tables on every page


@admin.register(MarginSnapshot)
class MarginSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("taken_at", "account", "used_margin", "available_margin", "capital", "tick_id")
    list_filter = ("account__role", "account__broker")
    search_fields = ("account__broker_user_id", "account__display_name")
    date_hierarchy = "taken_at"
    list_select_related = ("account",)


@admin.register(MasterOrder)
class MasterOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "first_seen_at",
        "broker_order_id",
        "account",
        "side",
        "quantity",
        "exchange",
        "tradingsymbol",
        "product",
        "order_type",
        "price",
        "status",
        "filled_quantity",
        "average_price",
    )
    list_filter = ("status", "side", "exchange", "product", "order_type")
    search_fields = ("broker_order_id", "tradingsymbol", "tag")
    date_hierarchy = "first_seen_at"
    list_select_related = ("account",)


@admin.register(MasterPosition)
class MasterPositionAdmin(ReadOnlyAdmin):
    list_display = ("account", "exchange", "tradingsymbol", "product", "quantity", "updated_at")
    list_filter = ("exchange", "product")
    search_fields = ("tradingsymbol",)
    list_select_related = ("account",)


class OrderMappingInline(admin.TabularInline):
    model = OrderMapping
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "tag",
        "child",
        "slice_no",
        "status",
        "side",
        "lots",
        "quantity",
        "reason_code",
        "broker_order_id",
        "filled_quantity",
        "average_price",
        "latency_ms",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("child")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "kind",
        "status",
        "side",
        "exchange",
        "tradingsymbol",
        "product",
        "master_quantity",
        "master_lots",
        "fraction",
        "exit_ratio",
        "master",
    )
    list_filter = ("kind", "status", "exchange", "product", "margin_source")
    search_fields = ("tradingsymbol", "group_key")
    date_hierarchy = "created_at"
    list_select_related = ("master",)
    inlines = (OrderMappingInline,)


@admin.register(OrderMapping)
class OrderMappingAdmin(ReadOnlyAdmin):
    list_display = (
        "tag",
        "created_at",
        "child",
        "allocation_id",
        "status",
        "side",
        "quantity",
        "lots",
        "exchange",
        "tradingsymbol",
        "reason_code",
        "broker_order_id",
        "broker_status",
        "filled_quantity",
        "latency_ms",
    )
    list_filter = ("status", "reason_code", "exchange", "product", "side")
    search_fields = ("tag", "broker_order_id", "tradingsymbol", "child__broker_user_id")
    date_hierarchy = "created_at"
    list_select_related = ("child",)


@admin.register(ReplicationEvent)
class ReplicationEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "actor", "account", "short_message")
    list_filter = ("kind", "actor")
    search_fields = ("message", "account__broker_user_id", "kind")
    date_hierarchy = "created_at"
    list_select_related = ("account",)
    fields = (
        "created_at",
        "kind",
        "actor",
        "account",
        "allocation",
        "mapping",
        "master_order",
        "message",
        "details",
    )
    readonly_fields = fields

    @admin.display(description="message")
    def short_message(self, obj):
        return obj.message if len(obj.message) <= 120 else obj.message[:117] + "..."

    @admin.display(description="data")
    def details(self, obj):
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.data, indent=2, sort_keys=True, ensure_ascii=False)
        )


@admin.register(TickRun)
class TickRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "started_at", "duration_ms", "outcome", "holder", "epoch", "counts", "short_error")
    list_filter = ("outcome",)
    date_hierarchy = "started_at"

    @admin.display(description="error")
    def short_error(self, obj):
        return obj.error if len(obj.error) <= 120 else obj.error[:117] + "..."


@admin.register(OrchestratorLease)
class OrchestratorLeaseAdmin(ReadOnlyAdmin):
    list_display = ("name", "holder", "epoch", "expires_at", "heartbeat_at")


@admin.register(EngineControl)
class EngineControlAdmin(admin.ModelAdmin):
    """The kill switches: editable, and every save is an audited engine_control_update."""

    list_display = ("__str__", "paused", "halted", "dry_run", "approval_mode", "updated_at", "updated_by")
    fields = (*FLAGS, "updated_at", "updated_by")
    readonly_fields = ("updated_at", "updated_by")

    def has_add_permission(self, request):
        return super().has_add_permission(request) and not EngineControl.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        control = engine_control_update(
            actor=request.user.get_username(), **{name: form.cleaned_data[name] for name in FLAGS}
        )
        obj.pk = control.pk
        obj.refresh_from_db()
