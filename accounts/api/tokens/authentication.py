"""`Authorization: Token <secret>`: knox's hashed, expiring tokens, as REST_FRAMEWORK's auth class."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication  # type: ignore[import-untyped]
from rest_framework import exceptions


class ApiTokenAuthentication(TokenAuthentication):  # type: ignore[misc]
    """knox's token authentication; a token that is not UTF-8 is a 401, not a server error.

    Expired tokens are refused (and deleted), so are tokens of inactive users; a refusal is
    `AuthenticationFailed`, which the API's handler answers as `{code, message, fields}`.
    """

    def authenticate_credentials(self, token: bytes) -> tuple[Any, Any]:
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)  # type: ignore[no-any-return]


class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The OpenAPI security scheme of ApiTokenAuthentication (the one DRF's token had)."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")  # noqa: S106 (the scheme name)
