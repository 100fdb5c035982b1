"""Production shape (issue 14 item 4): `/metrics` in the Prometheus text format, read from the
database the engine writes (it runs in another process), staff-only; `/healthz` for a supervisor."""

from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import AccountStatus, Role
from replication.models import OrchestratorLease
from replication.reconciliation import reconciliation_sweep
from tests.engine_helpers import FUT
from tests.factories import KiteAccountFactory, StaffFactory, UserFactory

TOKEN = "prometheus-scrape-token-for-tests"

METRICS = (
    "pms_tick_duration_seconds",
    "pms_ticks_in_window",
    "pms_tick_last_finished_timestamp_seconds",
    "pms_event_to_last_child_seconds",
    "pms_child_orders",
    "pms_owed_exits",
    "pms_owed_exit_oldest_seconds",
    "pms_reconciliation_major_drifts",
    "pms_accounts_needing_login",
    "pms_engine_lease_holder",
    "pms_engine_lease_expires_in_seconds",
)


def _scrape(client, **headers) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _trade_with_an_exit_held_back(desk, orch, faults) -> None:
    """The master buys 2 lots and the children copy them; C1's session dies, so when the master
    sells, C1's exit is owed and held back (NEEDS_LOGIN) while the others exit."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()
    faults.token_expired.add("C1")
    desk.place("SELL", FUT, 150)
    for _ in range(3):
        orch.run_tick()
    faults.token_expired.discard("C1")  # the broker answers again; C1 still waits for its login


def test_prod_metrics_name_every_metric_after_ticks_on_the_paper_desk(desk, orch, faults, client):
    """Issue 14 item 4: after ticks on the paper desk, /metrics answers in the Prometheus text format
    with tick duration, event-to-last-child latency, orders by outcome, owed exits, major drifts,
    accounts needing login and the lease holder, each read from what the engine wrote."""
    _trade_with_an_exit_held_back(desk, orch, faults)
    desk.children["C1"].refresh_from_db()
    assert desk.children["C1"].status == AccountStatus.NEEDS_LOGIN
    reconciliation_sweep()  # the 5-minute task: C1 holds 75 it is no longer entitled to
    KiteAccountFactory(role=Role.CHILD, status=AccountStatus.NEEDS_LOGIN)
    client.force_login(StaffFactory())

    samples = _scrape(client)

    assert set(METRICS) <= set(samples)
    assert samples["pms_tick_duration_seconds"][(("quantile", "0.5"),)] >= 0
    assert (("quantile", "0.99"),) in samples["pms_tick_duration_seconds"]
    assert samples["pms_ticks_in_window"][(("outcome", "ok"),)] == 6
    assert samples["pms_tick_last_finished_timestamp_seconds"][()] == pytest.approx(
        timezone.now().timestamp(), abs=60
    )
    assert samples["pms_event_to_last_child_seconds"][(("quantile", "0.99"),)] >= 0
    orders = samples["pms_child_orders"]
    assert orders[(("outcome", "filled"),)] == 7  # entries C1, C2, C4, C5; exits C2, C4, C5
    assert orders[(("outcome", "rejected"),)] == 0
    assert samples["pms_owed_exits"][()] == 1
    assert samples["pms_owed_exit_oldest_seconds"][()] >= 0
    assert samples["pms_reconciliation_major_drifts"][()] >= 1
    assert samples["pms_accounts_needing_login"][(("role", "child"),)] == 1
    assert samples["pms_engine_lease_holder"] == {(("epoch", "1"), ("holder", "test-orchestrator")): 1.0}
    assert 0 < samples["pms_engine_lease_expires_in_seconds"][()] <= 15


def test_prod_metrics_refuse_anonymous_and_non_staff_and_accept_the_token(db, client):
    """Issue 14 item 4: /metrics is staff-only: 401 anonymous or with a wrong token, 403 for a
    signed-in client, 200 for staff and for Prometheus' bearer token (METRICS_TOKEN)."""
    with override_settings(METRICS_TOKEN=TOKEN):
        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert "pms_owed_exits" in _scrape(client, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

        client.force_login(UserFactory())
        assert client.get("/metrics").status_code == 403
        client.force_login(StaffFactory())
        assert "pms_owed_exits" in _scrape(client)

    client.logout()
    with override_settings(METRICS_TOKEN=""):  # no token configured: an empty bearer is no key
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def _health(client) -> tuple[int, dict[str, str]]:
    response = client.get("/healthz")
    return response.status_code, json.loads(response.content)


def test_prod_healthz_is_200_with_a_fresh_lease_and_503_with_a_stale_one(desk, orch, client):
    """Issue 14 item 4: /healthz (no sign-in) answers 200 while the engine holds a fresh lease and
    503 once it is stale or released, naming neither the holder nor any account."""
    assert _health(client) == (
        503,
        {"database": "ok", "engine_lease": "none", "static": "missing", "status": "unhealthy"},
    )
    orch.run_tick()

    status, body = _health(client)
    assert (status, body["database"], body["engine_lease"], body["status"]) == (200, "ok", "fresh", "ok")
    assert "test-orchestrator" not in json.dumps(body)

    OrchestratorLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    status, body = _health(client)
    assert (status, body["engine_lease"]) == (503, "stale")


def test_prod_healthz_is_503_when_the_database_is_unreachable(desk, orch, client):
    """Issue 14 item 4: /healthz answers 503 with `database: error` when the database refuses."""
    orch.run_tick()
    assert _health(client)[0] == 200

    with mock.patch.object(connection, "cursor", side_effect=OperationalError("connection refused")):
        status, body = _health(client)

    assert status == 503
    assert body["database"] == "error"
    assert body["status"] == "unhealthy"
