"""One exception handler for the API: every error body is `{code, message, fields}`.

Domain errors (`AccountError` from the account services) become 400 unless their code says
otherwise (`CODE_STATUS`); DRF errors keep their status with a stable code. Messages never echo a
credential: the services' messages do not, and DRF's type errors name the field, not the value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from accounts.validation import AccountError

logger = logging.getLogger(__name__)

# AccountError codes that are not "bad input" (400).
CODE_STATUS: dict[str, int] = {
    "not_found": status.HTTP_404_NOT_FOUND,
    "conflict": status.HTTP_409_CONFLICT,
    "already_linked": status.HTTP_409_CONFLICT,
    "positions_held": status.HTTP_409_CONFLICT,
    "master_unlink": status.HTTP_409_CONFLICT,
    "permission_denied": status.HTTP_403_FORBIDDEN,
}

# DRF exception class -> code, for the ones whose default code is not already what we want.
_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
}


class ApiError(exceptions.APIException):
    """An API-level refusal that is not a service's AccountError (e.g. a client loosening a limit)."""

    def __init__(
        self, code: str, message: str, fields: Mapping[str, str] | None = None, *, status_code: int = 400
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.fields = dict(fields or {})


def error_body(code: str, message: str, fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "fields": dict(fields or {})}


def _flatten(detail: Any, path: str = "") -> list[tuple[str, str, str]]:
    """(field path, message, code) for every leaf of a DRF error detail ("" = not about one field)."""
    items: list[tuple[str, str, str]] = []
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            items += _flatten(value, ".".join(part for part in (path, name) if part))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            nested = isinstance(value, (Mapping, list))
            items += _flatten(value, ".".join(p for p in (path, str(index)) if p) if nested else path)
    else:
        items.append((path, str(detail), str(getattr(detail, "code", None) or "invalid")))
    return items


def _validation_body(exc: exceptions.ValidationError) -> dict[str, Any]:
    leaves = _flatten(exc.detail)
    fields: dict[str, str] = {}
    for path, text, _ in leaves:
        if path:
            fields[path] = f"{fields[path]} {text}" if path in fields else text
    code = leaves[0][2] if leaves else "invalid"
    message = "; ".join(f"{path}: {text}" if path else text for path, text, _ in leaves) or "invalid input"
    return error_body(code, message, fields)


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: map domain and DRF errors to `{code, message, fields}`."""
    if isinstance(exc, AccountError):
        set_rollback()
        return Response(
            error_body(exc.code, exc.message, exc.fields),
            status=CODE_STATUS.get(exc.code, status.HTTP_400_BAD_REQUEST),
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django answer 500 (and log it) without leaking details
    headers: dict[str, str] = {}
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        authenticate_header = getattr(exc, "auth_header", None)
        if authenticate_header:
            headers["WWW-Authenticate"] = authenticate_header
    wait = getattr(exc, "wait", None) if isinstance(exc, exceptions.Throttled) else None
    if wait is not None:
        headers["Retry-After"] = str(int(wait))
    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, exc.message, exc.fields)
    elif isinstance(exc, exceptions.ValidationError):
        body = _validation_body(exc)
    else:
        code = _DRF_CODES.get(type(exc)) or next(
            (code for cls, code in _DRF_CODES.items() if isinstance(exc, cls)), None
        )
        body = error_body(code or str(exc.default_code), str(exc.detail))
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)
