"""/api/v1/auth/tokens: a user lists and revokes its own API tokens (staff too only their own)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import ApiPagination, ApiView, errors
from accounts.api.exceptions import ApiError
from accounts.api.tokens.serializers import TokenInfoOutput
from accounts.api.tokens.services import token_list_live, token_revoke

TAG = "auth"


class TokenListView(ListAPIView[Any]):
    """Your live API tokens, newest first: id, prefix, created, expiry, and which one you are using.

    A token's secret is shown once, when POST /api/v1/auth/token creates it; never here.
    """

    serializer_class = TokenInfoOutput
    pagination_class = ApiPagination
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> Any:
        return token_list_live(user=self.request.user)

    def get_serializer_context(self) -> dict[str, Any]:
        return {
            **super().get_serializer_context(),
            "current_digest": getattr(self.request.auth, "digest", None),
        }

    @extend_schema(
        tags=[TAG], operation_id="auth_tokens_list", responses={200: TokenInfoOutput(many=True), **errors()}
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class TokenRevokeView(ApiView):
    """End one of your API tokens (the one in use too: a logout). Others' tokens answer 404."""

    @extend_schema(
        tags=[TAG],
        operation_id="auth_tokens_revoke",
        responses={204: OpenApiResponse(description="Revoked."), **errors(404)},
    )
    def delete(self, request: Request, pk: str) -> Response:
        if not token_revoke(user=request.user, token_id=pk):
            raise ApiError("not_found", "No such token.", status_code=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)
