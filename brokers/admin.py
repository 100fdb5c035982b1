"""Admin for the brokers app: the freeze-quantity table staff keep; the brokers' instrument masters
(read-only); the paper exchange (inspection only, except instrument prices; never places orders)."""

from __future__ import annotations

from django.contrib import admin

from brokers.models import BrokerInstrument, FreezeQuantity
from brokers.paper.models import PaperAccount, PaperInstrument, PaperOrder, PaperPosition, PaperTrade


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows are written by the paper exchange's services; the admin only shows them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaperAccount)
class PaperAccountAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "cash", "order_seq", "created_at")
    search_fields = ("user_id",)


@admin.register(PaperInstrument)
class PaperInstrumentAdmin(admin.ModelAdmin):
    """Only `last_price` is editable (a price change here does not match resting orders; use
    `manage.py paper price` for that)."""

    list_display = (
        "exchange",
        "tradingsymbol",
        "instrument_type",
        "underlying",
        "expiry",
        "strike",
        "lot_size",
        "last_price",
    )
    list_filter = ("exchange", "instrument_type", "underlying")
    search_fields = ("tradingsymbol", "name", "underlying")
    list_editable = ("last_price",)
    readonly_fields = (
        "exchange",
        "tradingsymbol",
        "instrument_token",
        "exchange_token",
        "name",
        "underlying",
        "instrument_type",
        "segment",
        "lot_size",
        "tick_size",
        "expiry",
        "strike",
        "freeze_quantity",
        "updated_at",
    )

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaperOrder)
class PaperOrderAdmin(ReadOnlyAdmin):
    list_display = (
        "order_id",
        "account",
        "side",
        "quantity",
        "exchange",
        "tradingsymbol",
        "order_type",
        "price",
        "trigger_price",
        "status",
        "filled_quantity",
        "average_price",
        "placed_at",
    )
    list_filter = ("status", "order_type", "exchange")
    search_fields = ("order_id", "tag", "tradingsymbol", "account__user_id")
    list_select_related = ("account",)


@admin.register(PaperTrade)
class PaperTradeAdmin(ReadOnlyAdmin):
    list_display = (
        "trade_id",
        "account",
        "side",
        "quantity",
        "exchange",
        "tradingsymbol",
        "price",
        "filled_at",
    )
    search_fields = ("trade_id", "tradingsymbol", "account__user_id")
    list_select_related = ("account",)


@admin.register(PaperPosition)
class PaperPositionAdmin(ReadOnlyAdmin):
    list_display = (
        "account",
        "exchange",
        "tradingsymbol",
        "product",
        "quantity",
        "average_price",
        "realised_pnl",
    )
    search_fields = ("tradingsymbol", "account__user_id")
    list_select_related = ("account",)


@admin.register(FreezeQuantity)
class FreezeQuantityAdmin(admin.ModelAdmin):
    """The exchange's quantity freeze limit per underlying: orders above it are sliced. A broker
    that publishes its own figure wins over this table; `settings.FREEZE_QUANTITIES` overrides it."""

    list_display = ("underlying", "exchange", "quantity", "effective_from", "source", "updated_at")
    list_editable = ("quantity",)
    list_filter = ("exchange",)
    search_fields = ("underlying",)
    readonly_fields = ("updated_at",)


@admin.register(BrokerInstrument)
class BrokerInstrumentAdmin(ReadOnlyAdmin):
    """Each broker's instrument master as loaded today (`manage.py refresh_instruments`)."""

    list_display = (
        "broker",
        "exchange",
        "symbol",
        "underlying",
        "instrument_type",
        "expiry",
        "strike",
        "lot_size",
        "broker_token",
        "broker_symbol",
        "trading_day",
    )
    list_filter = ("broker", "exchange", "instrument_type")
    search_fields = ("symbol", "underlying", "broker_token", "broker_symbol")
