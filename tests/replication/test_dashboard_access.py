"""Every dashboard URL refuses anonymous users (login redirect) and non-staff users (403).

The URL conf is walked, so a new dashboard page is covered (or fails here) without editing this file.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from replication.controls import engine_control_get
from replication.models import OrderMapping, ReplicationEvent
from tests.dashboard_factories import NoDatabaseClients, seed_desk
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def dashboard_patterns() -> list[URLPattern]:
    namespaces = [
        p for p in get_resolver().url_patterns if isinstance(p, URLResolver) and p.namespace == "dashboard"
    ]
    assert len(namespaces) == 1, "the dashboard URLs are included once under the 'dashboard' namespace"
    patterns = [p for p in namespaces[0].url_patterns if isinstance(p, URLPattern)]
    assert len(patterns) >= 10
    return patterns


@pytest.fixture
def urls(monkeypatch):
    """Every dashboard URL, its arguments built from seeded rows."""
    monkeypatch.setattr("replication.dashboard.selectors.broker_clients", NoDatabaseClients)
    desk = seed_desk(2)
    values = {"flag": "paused"}
    out = []
    for pattern in dashboard_patterns():
        kwargs = {}
        for name in pattern.pattern.converters:
            if name == "pk":
                kwargs[name] = (
                    desk.allocations[1].pk if pattern.name in ("approve", "reject") else desk.children[0].pk
                )
            else:
                assert name in values, f"no test value for <{name}> in {pattern.name}: add one"
                kwargs[name] = values[name]
        out.append(reverse(f"dashboard:{pattern.name}", kwargs=kwargs))
    return out


def test_dashboard_url_walk_finds_every_page(urls):
    assert "/staff/" in urls and "/staff/reconcile/correct/" in urls
    assert len(urls) == len(dashboard_patterns())


def test_dashboard_refuses_anonymous_users_with_a_login_redirect(client, urls):
    for url in urls:
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/?next="), url


def test_dashboard_refuses_non_staff_users_with_403(client, urls):
    client.force_login(UserFactory(username="client-user"))
    for url in urls:
        assert client.get(url).status_code == 403, url
        assert client.post(url, {"value": "on", "reason": "x"}).status_code == 403, url
    assert engine_control_get().paused is False
    assert not ReplicationEvent.objects.filter(actor="client-user").exists()
    assert not OrderMapping.objects.filter(reason_code__in=("corrective", "flatten")).exists()


def test_dashboard_refuses_inactive_staff(client, urls):
    user = StaffFactory(username="former-staff")
    client.force_login(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    for url in urls:
        assert client.get(url).status_code in (302, 403), url


def test_dashboard_serves_every_page_to_staff(client, urls):
    client.force_login(StaffFactory(username="ops"))
    for url in urls:
        assert client.get(url).status_code == 200, url
