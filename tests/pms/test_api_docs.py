"""The interactive API docs work offline: their assets come from this app, not a CDN."""

from __future__ import annotations

import pytest

from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


def test_api_docs_serve_swagger_ui_from_local_static(client):
    client.force_login(StaffFactory())
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html


def test_api_docs_refuse_anonymous(client):
    assert client.get("/api/docs/").status_code in (401, 403)
