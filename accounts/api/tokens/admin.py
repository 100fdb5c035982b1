"""API tokens in the admin: who holds which (prefix, dates), never a secret, and no new ones.

knox's own admin lists digests and mints tokens for any user, showing staff the new secret (staff
could then act as a client, and the audit would name the client): it is replaced by a read-only
list. Staff may delete a token (revoke it), never create or edit one.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from knox import admin as knox_admin  # type: ignore[import-untyped]  # noqa: F401  (registers first)
from knox.models import AuthToken  # type: ignore[import-untyped]

from accounts.api.tokens.services import token_prefix

if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("user", "prefix", "created", "expiry")
    list_select_related = ("user",)
    search_fields = ("user__username",)
    ordering = ("-created",)
    fields = ("user", "prefix", "created", "expiry")
    readonly_fields = fields

    @admin.display(description="prefix")
    def prefix(self, token: Any) -> str:
        return token_prefix(token)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
