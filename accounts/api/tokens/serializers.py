"""Output of the token list: what a token is, never its secret."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.api.tokens.services import token_prefix


class TokenInfoOutput(serializers.Serializer[Any]):
    id = serializers.CharField(source="digest", help_text="Pass to DELETE /api/v1/auth/tokens/{id}.")
    prefix = serializers.SerializerMethodField(help_text="The token's first characters.")
    created = serializers.DateTimeField()
    expiry = serializers.DateTimeField()
    current = serializers.SerializerMethodField(help_text="Whether this request used this token.")

    def get_prefix(self, token: Any) -> str:
        return token_prefix(token)

    def get_current(self, token: Any) -> bool:
        return bool(token.digest == self.context.get("current_digest"))
