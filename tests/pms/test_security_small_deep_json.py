"""Issue 12 item 6: a deeply nested JSON body is a 400 in the error shape, never a 500 trace."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.forms.models import model_to_dict
from django.urls import URLPattern, URLResolver, reverse
from rest_framework.test import APIClient

from accounts.models import Account
from pms.api_urls import v1
from replication.models import ReplicationEvent
from tests.factories import (
    AccountFactory,
    KiteAccountFactory,
    MasterAccountFactory,
    StaffFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

DEPTH = 50_000
DEEP_ARRAY = "[" * DEPTH + "]" * DEPTH
DEEP_OBJECT = '{"a":' * DEPTH + "1" + "}" * DEPTH
# Deep enough to be refused, shallow enough for Python's own parser (under its recursion limit).
NESTED_500 = '{"display_name":' + "[" * 500 + "]" * 500 + "}"
BODY_METHODS = ("post", "put", "patch", "delete")


@pytest.fixture
def users(db):
    cache.clear()  # throttle counters
    yield {"staff": StaffFactory(username="operator"), "alice": UserFactory(username="alice")}
    cache.clear()


def _client(user: Any | None) -> APIClient:
    """A client that answers a server error with a 500 response instead of raising it in the test.

    Requests go over https, as in production behind TLS (each call passes `secure=True`).
    """
    client = APIClient(raise_request_exception=False)
    if user is not None:
        client.force_authenticate(user=user)
    return client


def _routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> list[str]:
    """Every /api/v1/ route as a path, `<int:pk>` filled in later."""
    found: list[str] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, route)
        else:
            found.append(route)
    return found


def _snapshot() -> tuple[dict[int, dict[str, Any]], int]:
    return {a.pk: model_to_dict(a) for a in Account.objects.all()}, ReplicationEvent.objects.count()


def _assert_error_shape(response) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:300])
    body = response.json()
    assert set(body) == {"code", "message", "fields"}, body
    assert b"RecursionError" not in response.content and b"Traceback" not in response.content


@pytest.mark.parametrize("raw", [DEEP_ARRAY, DEEP_OBJECT, NESTED_500], ids=["array", "object", "500-levels"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/auth/token"),
        ("post", "/api/v1/accounts/link"),
        ("patch", "/api/v1/accounts/{pk}"),
        ("post", "/api/v1/accounts/{pk}/consent"),
    ],
)
def test_deep_json_is_a_400_on_the_api_routes_that_read_a_body(users, method, path, raw):
    """Issue 12 item 6: 50,000 nested arrays/objects get 400 {code, message, fields}, not a 500."""
    account = AccountFactory(owner=users["alice"])
    before = _snapshot()
    client = _client(None if "auth/token" in path else users["alice"])

    response = getattr(client, method)(
        path.format(pk=account.pk), raw, content_type="application/json", secure=True
    )

    assert response.status_code == 400, (response.status_code, response.content[:300])
    _assert_error_shape(response)
    assert response.json()["code"] == "parse_error"
    assert "nested" in response.json()["message"]
    assert _snapshot() == before


@pytest.mark.parametrize("raw", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_deep_json_never_breaks_any_api_route(users, raw):
    """Issue 12 item 6: every /api/v1/ route, every body method, staff and client: never a 500.

    A route that does not read the body may well succeed (e.g. a staff DELETE); one that reads it
    refuses it in the error shape.
    """
    MasterAccountFactory()
    mine = AccountFactory(owner=users["alice"])
    routes = _routes(v1)
    assert len(routes) >= 8
    for route in routes:
        path = "/api/v1/" + route.replace("<int:pk>", str(mine.pk))
        for user in (users["alice"], users["staff"]):
            for method in BODY_METHODS:
                response = getattr(_client(user), method)(
                    path, raw, content_type="application/json", secure=True
                )
                assert response.status_code < 500, (method, path, response.content[:300])
                if response.status_code >= 400:
                    _assert_error_shape(response)


@pytest.mark.parametrize("raw", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_deep_json_postback_is_refused_with_a_400(raw):
    """Issue 12 item 6: the Kite postback endpoint answers a 50,000-level body with 400, not 500."""
    KiteAccountFactory(broker_user_id="AB1234", api_secret="postbacksecret123")
    response = _client(None).post(reverse("kite:postback"), raw, content_type="application/json", secure=True)

    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["status"] == "error"
    assert b"RecursionError" not in response.content
