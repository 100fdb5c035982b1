"""What every API view shares: JSON only, authenticated by default, one error shape, paging."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.api.parsers import LimitedJSONParser
from accounts.api.serializers import ErrorOutput

ERROR_MEANINGS = {
    400: "Invalid input: `{code, message, fields}`; nothing was saved.",
    401: "Not authenticated.",
    403: "Authenticated, but not allowed to do this.",
    404: "No such object, or not yours.",
    409: "Refused in the current state (e.g. the engine holds positions there).",
    429: "Too many requests; retry after the `Retry-After` seconds.",
}


class ApiView(APIView):
    """JSON in (nested at most MAX_JSON_DEPTH levels), JSON out; only authenticated users unless a
    view says otherwise."""

    parser_classes = [LimitedJSONParser]
    renderer_classes = [JSONRenderer]
    permission_classes = [IsAuthenticated]


class ApiPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error responses (401 always: every endpoint needs authentication)."""
    return {
        code: OpenApiResponse(response=ErrorOutput, description=ERROR_MEANINGS[code])
        for code in sorted({401, *codes})
    }


def validated(
    serializer_class: type[serializers.Serializer[Any]], data: Any, **kwargs: Any
) -> dict[str, Any]:
    """The serializer's validated data; raises ValidationError (400 via the handler)."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def actor(request: Request) -> str:
    """Who an audit row names for this request: the username."""
    return str(request.user.get_username())
