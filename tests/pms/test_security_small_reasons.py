"""Issue 12 item 6: free-text reasons cannot spoof the audit trail (line breaks, bidi, invisibles)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.messages import get_messages
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import Account
from accounts.services import account_switch_broker
from accounts.validation import AccountError, clean_name, clean_reason
from replication.controls import engine_control_update
from replication.models import Allocation, AllocationStatus, OrderMapping, ReplicationEvent
from tests.api_helpers import seed_allocation
from tests.dashboard_helpers import FUT, build_desk, orchestrator, replicate_entry
from tests.factories import AccountFactory, MasterAccountFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

API = "/api/v1"
SPOOFS = {
    "newline": "client asked\n2025-01-01 12:00 operator: approved by compliance",
    "carriage-return": "fine\rapproved",
    "tab": "reason\tforged column",
    "rtl-override": "refund \u202egnp.exe",
    "rtl-isolate": "ok \u2067hidden\u2069",
    "zero-width-space": "mandate\u200bended",
    "zero-width-joiner": "man\u200ddate",
    "bom": "\ufeffended",
    "line-separator": "first\u2028second",
    "paragraph-separator": "first\u2029second",
}
IDS = list(SPOOFS)


def _api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def _staff_page_client() -> Client:
    client = Client()
    client.force_login(StaffFactory(username="ops"))
    return client


def _state() -> tuple[dict[int, dict[str, Any]], int]:
    return {a.pk: model_to_dict(a) for a in Account.objects.all()}, ReplicationEvent.objects.count()


@pytest.mark.parametrize("reason", SPOOFS.values(), ids=IDS)
def test_reason_validator_refuses_spoofing_characters_as_the_name_validator_does(reason):
    """Issue 12 item 6: one validator: a reason and a display name refuse the same characters."""
    with pytest.raises(AccountError) as refused_reason:
        clean_reason(reason)
    with pytest.raises(AccountError) as refused_name:
        clean_name(reason)
    assert refused_reason.value.code == "invalid_reason" and "reason" in refused_reason.value.fields
    assert refused_name.value.code == "invalid_name"
    assert "control characters" in refused_reason.value.message
    assert clean_reason("  client left; see ticket #42 (ordinary text, ₹ and é are fine)  ").startswith(
        "client left"
    )


@pytest.mark.parametrize("reason", SPOOFS.values(), ids=IDS)
def test_api_halt_with_a_spoofing_reason_is_refused(reason):
    """Issue 12 item 6: a client's halt (its kill switch) with a spoofing reason: 400, no change."""
    alice = UserFactory(username="alice")
    account = AccountFactory(owner=alice)
    before = _state()

    response = _api(alice).patch(
        f"{API}/accounts/{account.pk}", {"status": "halted", "reason": reason}, format="json", secure=True
    )

    assert response.status_code == 400, response.content
    assert "reason" in response.json()["fields"]
    assert _state() == before


@pytest.mark.parametrize("reason", ["a\nb", "a\u202eb", "a\u200bb"], ids=["newline", "rtl", "zero-width"])
def test_api_forced_unlink_and_disable_with_a_spoofing_reason_are_refused(reason):
    """Issue 12 item 6: staff force reasons (unlink, disable while holding) refuse them too."""
    staff = StaffFactory(username="operator")
    account = AccountFactory(owner=UserFactory(username="alice"))
    seed_allocation(MasterAccountFactory(), account, filled=75)
    before = _state()

    unlink = _api(staff).delete(f"{API}/accounts/{account.pk}?force=true&reason={quote(reason)}", secure=True)
    disable = _api(staff).patch(
        f"{API}/accounts/{account.pk}",
        {"status": "disabled", "force": True, "reason": reason},
        format="json",
        secure=True,
    )

    assert (unlink.status_code, disable.status_code) == (400, 400), (unlink.content, disable.content)
    assert "reason" in unlink.json()["fields"] and "reason" in disable.json()["fields"]
    assert _state() == before


def test_broker_switch_with_a_spoofing_reason_is_refused():
    """Issue 12 item 6: the broker switch's force reason goes through the same validator."""
    account = AccountFactory()
    with pytest.raises(AccountError) as refused:
        account_switch_broker(account=account, broker="kite", actor="ops", force=True, reason="x\u202ey")
    assert "reason" in refused.value.fields


@pytest.mark.parametrize("reason", ["mandate\nended", "mandate\u202eended", "mandate\u200bended"])
def test_dashboard_flatten_with_a_spoofing_reason_plans_nothing(reason):
    """Issue 12 item 6: staff flattening a child with a spoofing reason: refused, nothing planned."""
    desk = build_desk()
    with orchestrator() as orch:
        replicate_entry(desk, orch)
    client = _staff_page_client()
    events = ReplicationEvent.objects.count()

    response = client.post(
        reverse("dashboard:child_flatten", args=[desk.children["C2"].pk]), {"reason": reason}, secure=True
    )

    assert not OrderMapping.objects.filter(reason_code="flatten").exists()
    assert ReplicationEvent.objects.count() == events
    shown = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "control characters" in shown


@pytest.mark.parametrize("reason", ["too late\nApproved by CIO", "late\u202edevorppa", "late\u200b"])
def test_dashboard_reject_with_a_spoofing_reason_changes_nothing(reason):
    """Issue 12 item 6: rejecting a held allocation with a spoofing reason: refused, still held."""
    desk = build_desk()
    engine_control_update(actor="ops", approval_mode=True)
    with orchestrator() as orch:
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
    allocation = Allocation.objects.get()
    client = _staff_page_client()

    response = client.post(reverse("dashboard:reject", args=[allocation.pk]), {"reason": reason}, secure=True)

    allocation.refresh_from_db()
    assert allocation.status == AllocationStatus.AWAITING_APPROVAL
    assert reason not in allocation.reason
    assert not ReplicationEvent.objects.filter(kind="allocation_rejected").exists()
    shown = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "control characters" in shown
