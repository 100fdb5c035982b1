"""Each dashboard list view makes the same number of queries for 2 children as for 20."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.dashboard_factories import NoDatabaseClients, add_children, seed_desk
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db

MAX_QUERIES = 25


def _count(client, url, params=None) -> int:
    client.get(url, params)  # warm-up: session, kill-switch row, content types
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


def _child_url(desk) -> str:
    return reverse("dashboard:child", args=[desk.children[0].pk])


PAGES = [
    ("overview", lambda desk: reverse("dashboard:overview"), None),
    ("overview_live", lambda desk: reverse("dashboard:overview_live"), None),
    ("log", lambda desk: reverse("dashboard:log"), None),
    ("log filtered", lambda desk: reverse("dashboard:log"), {"status": "filled", "instrument": "NIFTY"}),
    ("log_live", lambda desk: reverse("dashboard:log_live"), None),
    ("log_csv", lambda desk: reverse("dashboard:log_csv"), None),
    ("reconcile", lambda desk: reverse("dashboard:reconcile"), None),
    ("child", _child_url, None),
    ("charts", lambda desk: reverse("dashboard:charts"), None),
]


@pytest.mark.parametrize(("name", "url", "params"), PAGES, ids=[p[0] for p in PAGES])
def test_dashboard_list_view_queries_do_not_grow_with_children(client, monkeypatch, name, url, params):
    monkeypatch.setattr("replication.dashboard.selectors.broker_clients", NoDatabaseClients)
    client.force_login(StaffFactory(username="ops"))

    desk = seed_desk(2)
    few = _count(client, url(desk), params)
    add_children(desk, 18)
    many = _count(client, url(desk), params)

    assert few == many, f"{name}: {few} queries for 2 children, {many} for 20"
    assert many <= MAX_QUERIES, f"{name}: {many} queries"
