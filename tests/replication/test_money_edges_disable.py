"""Issue 11 defect 11: a child holding engine positions cannot be disabled unless staff force it
with a reason (as unlink does); until then its exits still reach the broker."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Account, AccountStatus
from accounts.services import AccountError, account_set_status
from replication.models import ReplicationEvent
from tests.api_helpers import API
from tests.engine_helpers import FUT
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


def _child_holding(desk, orch) -> Account:
    """C2 holds what the engine bought for it after the master's 2-lot entry."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    assert desk.positions(FUT)["C2"] > 0
    return desk.children["C2"]


def test_money_edges_disable_via_api_refused_while_engine_holds_then_exit_reaches_broker(desk, orch, people):
    """Issue 11 defect 11: staff disabling a child with engine positions gets 409 positions_held;
    the child stays active and the master's exit is replicated to it on the paper exchange."""
    child = _child_holding(desk, orch)
    held = desk.positions(FUT)["C2"]

    response = people.as_staff.patch(
        f"{API}/accounts/{child.pk}", {"status": "disabled", "reason": "client left"}, format="json"
    )

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "positions_held"
    assert f"NFO:{FUT}" in body["message"] and "force" in body["fields"]
    assert Account.objects.get(pk=child.pk).status == AccountStatus.ACTIVE
    assert not ReplicationEvent.objects.filter(kind="account.status_changed", account=child).exists()

    desk.place("SELL", FUT, 150)  # the master exits
    orch.run_tick()
    assert held > 0 and desk.positions(FUT)["C2"] == 0


def test_money_edges_disable_forced_by_staff_needs_a_reason_and_is_audited(desk, orch, people):
    """Issue 11 defect 11: a forced disable needs a reason, is staff-only, and records both."""
    child = _child_holding(desk, orch)
    detail = f"{API}/accounts/{child.pk}"

    no_reason = people.as_staff.patch(detail, {"status": "disabled", "force": True}, format="json")
    assert no_reason.status_code == 400 and no_reason.json()["code"] == "reason_required"
    child.owner = people.alice
    child.save(update_fields=["owner"])
    by_owner = people.as_alice.patch(
        detail, {"status": "disabled", "force": True, "reason": "mine"}, format="json"
    )
    assert by_owner.status_code == 403
    assert Account.objects.get(pk=child.pk).status == AccountStatus.ACTIVE

    forced = people.as_staff.patch(
        detail, {"status": "disabled", "force": True, "reason": "client closed the account"}, format="json"
    )

    assert forced.status_code == 200
    assert Account.objects.get(pk=child.pk).status == AccountStatus.DISABLED
    event = ReplicationEvent.objects.get(kind="account.status_changed", account=child)
    assert (event.data["forced"], event.data["reason"]) == (True, "client closed the account")
    assert event.data["holdings"][0]["instrument"] == f"NFO:{FUT}"


def test_money_edges_disable_service_and_admin_action_refused_while_engine_holds(desk, orch, client):
    """Issue 11 defect 11: the service itself refuses (so the admin action and every caller do)."""
    child = _child_holding(desk, orch)

    with pytest.raises(AccountError) as refused:
        account_set_status(account=child, status=AccountStatus.DISABLED, actor="ops", reason="x")
    assert refused.value.code == "positions_held"

    staff = StaffFactory(username="admin-op", is_superuser=True)
    client.force_login(staff)
    response = client.post(
        reverse("admin:accounts_account_changelist"),
        {"action": "disable_accounts", "_selected_action": [child.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "engine holds" in response.content.decode()
    assert Account.objects.get(pk=child.pk).status == AccountStatus.ACTIVE

    # Pausing and halting stay allowed: they keep the child's exits flowing (pause) or held (halt).
    paused = account_set_status(account=child, status=AccountStatus.PAUSED, actor="ops", reason="x")
    assert paused.status == AccountStatus.PAUSED


def test_money_edges_disable_allowed_once_the_engine_holds_nothing(desk, orch):
    """Issue 11 defect 11: after the master's exit the child holds nothing and may be disabled."""
    child = _child_holding(desk, orch)
    desk.place("SELL", FUT, 150)
    orch.run_tick()
    orch.run_tick()  # the exit's fill is synced from the child's book
    assert desk.positions(FUT)["C2"] == 0

    disabled = account_set_status(account=child, status=AccountStatus.DISABLED, actor="ops", reason="left")

    assert disabled.status == AccountStatus.DISABLED
