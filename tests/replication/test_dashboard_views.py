"""Staff dashboard pages: what staff see and what their clicks do (Django test client)."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse
from django.utils.html import escape

from accounts.models import AccountStatus
from replication.controls import engine_control_get, engine_control_update
from replication.models import (
    Allocation,
    AllocationStatus,
    MappingStatus,
    OrderMapping,
    ReplicationEvent,
)
from tests.dashboard_helpers import FUT, build_desk, close_by_hand, orchestrator, replicate_entry
from tests.factories import KiteAccountFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory(username="ops"))
    return client


@pytest.fixture
def desk():
    desk = build_desk()
    with orchestrator() as orch:
        replicate_entry(desk, orch)
    return desk


def _text(response) -> str:
    return response.content.decode()


def test_overview_shows_engine_funds_switches_children_and_logins(staff_client, desk):
    kite = KiteAccountFactory(display_name="Stale Kite", token_expires_at=None)
    desk.children["C3"].status = AccountStatus.NEEDS_LOGIN
    desk.children["C3"].save(update_fields=["status"])

    response = staff_client.get(reverse("dashboard:overview"))

    page = _text(response)
    assert response.status_code == 200
    assert "dashboard-tests" in page  # the leader holding the lease
    assert 'Capital</div><div class="stat">₹10,00,000</div>' in page  # Indian digit grouping
    assert '<svg class="chart"' in page  # today's used-margin curve
    for label in ("Global pause", "Halt", "Dry run", "Approval mode"):
        assert label in page
    for name in ("C1", "C2", "C3", "C4", "C5"):
        assert f">{name}</a>" in page
    assert reverse("admin:accounts_account_change", args=[desk.children["C3"].pk]) in page
    assert f"/accounts/{kite.pk}/kite/login/" in page
    assert 'hx-get="/staff/live/overview/"' in page


def test_overview_fragment_is_the_live_part_only(staff_client, desk):
    response = staff_client.get(reverse("dashboard:overview_live"))
    page = _text(response)
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="overview-live"')
    assert "<html" not in page


def test_kill_switch_needs_confirmation_and_is_audited(staff_client, desk):
    url = reverse("dashboard:control", args=["halted"])

    confirm = staff_client.get(url, {"value": "on"})
    assert confirm.status_code == 200
    assert "Turn on halt?" in _text(confirm)
    assert engine_control_get().halted is False  # a GET changes nothing

    response = staff_client.post(url, {"value": "on"})

    assert response.status_code == 302 and response["Location"] == reverse("dashboard:overview")
    control = engine_control_get()
    assert control.halted is True and control.updated_by == "ops"
    event = ReplicationEvent.objects.get(kind="engine.control_changed")
    assert event.actor == "ops" and event.data == {"halted": {"before": False, "after": True}}
    assert "Engine HALTED" in _text(staff_client.get(reverse("dashboard:overview")))


def test_kill_switch_unknown_flag_is_404(staff_client):
    assert staff_client.get(reverse("dashboard:control", args=["everything"])).status_code == 404
    assert (
        staff_client.post(reverse("dashboard:control", args=["everything"]), {"value": "on"}).status_code
        == 404
    )


def test_log_shows_the_allocation_and_every_child_order(staff_client, desk):
    response = staff_client.get(reverse("dashboard:log"))

    page = _text(response)
    assert response.status_code == 200
    assert f"NFO:{FUT}" in page
    assert "fraction <b>30.00%</b>" in page
    # The margin source in plain words, its code beside them.
    source = 'rise in used margin <span class="code mono muted">(delta_u)</span>'
    assert f"margin attributed <b>₹3,00,000</b> ({source})" in page
    for name, status in (
        ("C1", "filled"),
        ("C2", "filled"),
        ("C3", "skipped"),
        ("C4", "filled"),
        ("C5", "filled"),
    ):
        assert f'data-child="{name}" data-status="{status}"' in page
    assert "needs ₹1,50,000.00 for one lot" in page  # C3's reason


def test_log_filters_by_status_and_instrument(staff_client, desk):
    skipped = _text(staff_client.get(reverse("dashboard:log"), {"status": "skipped"}))
    assert 'data-child="C3"' in skipped and 'data-child="C1"' not in skipped

    nothing = _text(staff_client.get(reverse("dashboard:log"), {"instrument": "BANKNIFTY"}))
    assert "No master events match these filters" in nothing

    other_day = _text(staff_client.get(reverse("dashboard:log"), {"day": "2001-01-01"}))
    assert "No master events match these filters" in other_day


def test_log_slippage_is_positive_when_worse_for_the_child(staff_client, desk):
    mapping = OrderMapping.objects.get(child=desk.children["C2"], quantity__gt=0)
    master_price = mapping.allocation.master_orders.get().average_price
    OrderMapping.objects.filter(pk=mapping.pk).update(average_price=master_price + 2)  # a BUY paid ₹2 more

    page = _text(staff_client.get(reverse("dashboard:log")))

    assert '<span class="worse">+2.00</span>' in page


def test_log_csv_exports_the_filtered_rows(staff_client, desk):
    response = staff_client.get(reverse("dashboard:log_csv"), {"status": "filled"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(r["child"] for r in rows) == ["C1", "C2", "C4", "C5"]
    c2 = next(r for r in rows if r["child"] == "C2")
    assert (c2["quantity"], c2["status"], c2["instrument"], c2["margin_source"]) == (
        "300",
        "filled",
        f"NFO:{FUT}",
        "delta_u",
    )
    assert c2["fraction"] == "0.300000000000" and c2["slippage_per_unit"] == "0.00"


def test_log_fragment_keeps_the_filters(staff_client, desk):
    page = _text(staff_client.get(reverse("dashboard:log"), {"status": "filled", "page": "1"}))
    assert 'hx-get="/staff/log/live/?status=filled&amp;page=1"' in page
    fragment = _text(staff_client.get(reverse("dashboard:log_live"), {"status": "filled"}))
    assert fragment.lstrip().startswith('<div id="log-live"') and 'data-child="C3"' not in fragment


def test_reconcile_flags_drift_and_the_correction_shows_exactly_what_is_sent(staff_client, desk):
    close_by_hand("C2", 300)
    c2 = desk.children["C2"]

    page = _text(staff_client.get(reverse("dashboard:reconcile")))
    assert f'data-child="C2" data-instrument="{FUT}" data-grade="major"' in page
    assert f'data-child="C1" data-instrument="{FUT}" data-grade="ok"' in page

    params = {"child": c2.pk, "exchange": "NFO", "tradingsymbol": FUT, "product": "NRML"}
    confirm = _text(staff_client.get(reverse("dashboard:correct"), params))
    assert '<b class="side-BUY" id="plan-side">BUY</b>' in confirm
    assert '<b id="plan-quantity">300</b>' in confirm
    assert f'<b id="plan-instrument">NFO:{FUT}</b>' in confirm
    assert '<dd id="plan-child">C2</dd>' in confirm
    assert not OrderMapping.objects.filter(allocation__margin_source="corrective").exists()

    response = staff_client.post(reverse("dashboard:correct"), {**params, "confirmed_quantity": 300})

    assert response.status_code == 302
    mapping = OrderMapping.objects.get(allocation__margin_source="corrective")
    assert (mapping.child_id, mapping.side, mapping.quantity, mapping.status) == (
        c2.pk,
        "BUY",
        300,
        "planned",
    )
    assert ReplicationEvent.objects.get(kind="corrective_order_planned").actor == "ops"
    after = _text(staff_client.get(reverse("dashboard:reconcile")))
    assert "Corrective order" in after and "sent on the next tick" in after
    assert "1 order working" in after


def test_correction_post_with_a_stale_quantity_sends_nothing(staff_client, desk):
    close_by_hand("C2", 150)
    params = {"child": desk.children["C2"].pk, "exchange": "NFO", "tradingsymbol": FUT, "product": "NRML"}

    response = staff_client.post(
        reverse("dashboard:correct"), {**params, "confirmed_quantity": 300}, follow=True
    )

    assert "changed since the confirmation page" in _text(response)
    assert not OrderMapping.objects.filter(allocation__margin_source="corrective").exists()


def test_correction_page_without_a_row_explains(staff_client, desk):
    page = _text(staff_client.get(reverse("dashboard:correct")))
    assert "Pick a row on the reconciliation page" in page
    no_drift = {"child": desk.children["C1"].pk, "exchange": "NFO", "tradingsymbol": FUT, "product": "NRML"}
    assert "no drift" in _text(staff_client.get(reverse("dashboard:correct"), no_drift))


def test_approval_mode_allocations_are_approved_or_rejected_from_reconciliation(staff_client):
    desk = build_desk()
    engine_control_update(actor="ops", approval_mode=True)
    with orchestrator() as orch:
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
        desk.place("BUY", FUT, 75)
        orch.run_tick()
    first, second = Allocation.objects.order_by("id")
    assert {first.status, second.status} == {AllocationStatus.AWAITING_APPROVAL}

    page = _text(staff_client.get(reverse("dashboard:reconcile")))
    assert f'data-allocation="{first.pk}"' in page and "approval mode is on" in page

    staff_client.post(reverse("dashboard:approve", args=[first.pk]))
    staff_client.post(reverse("dashboard:reject", args=[second.pk]), {"reason": "too late in the day"})

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.decided_by) == (AllocationStatus.PLANNED, "ops")
    assert second.status == AllocationStatus.REJECTED and "too late in the day" in second.reason
    assert set(ReplicationEvent.objects.filter(actor="ops").values_list("kind", flat=True)) >= {
        "allocation_approved",
        "allocation_rejected",
    }
    assert "Nothing is waiting for a decision" in _text(staff_client.get(reverse("dashboard:reconcile")))


def test_reject_without_a_reason_changes_nothing(staff_client):
    desk = build_desk()
    engine_control_update(actor="ops", approval_mode=True)
    with orchestrator() as orch:
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
    alloc = Allocation.objects.get()

    confirm = staff_client.get(reverse("dashboard:reject", args=[alloc.pk]))
    assert confirm.status_code == 200 and 'name="reason"' in _text(confirm)
    staff_client.post(reverse("dashboard:reject", args=[alloc.pk]), {"reason": ""})

    alloc.refresh_from_db()
    assert alloc.status == AllocationStatus.AWAITING_APPROVAL


def test_child_detail_shows_settings_capital_positions_pnl_orders_and_timeline(staff_client, desk):
    c2 = desk.children["C2"]
    response = staff_client.get(reverse("dashboard:child", args=[c2.pk]))

    page = _text(response)
    assert response.status_code == 200
    assert "Sizing capital" in page and "Total (used + available)" in page
    assert 'aria-label="Capital over the last 30 days"' in page
    assert f'NFO:{FUT}</td><td>NRML</td><td class="num">300</td>' in page
    assert "Today&#x27;s P&amp;L" in page or "Today's P&amp;L" in page
    tag = OrderMapping.objects.get(child=c2, quantity__gt=0).tag
    assert tag in page
    sent = ReplicationEvent.objects.filter(account=c2, kind="sent").get()
    assert f'<span class="kind">sent</span><span>{escape(sent.message)}</span>' in page  # the timeline


def test_child_detail_of_an_unknown_child_is_404(staff_client, desk):
    assert staff_client.get(reverse("dashboard:child", args=[desk.master.pk])).status_code == 404


def test_flatten_page_lists_the_orders_and_post_plans_them(staff_client, desk):
    c2 = desk.children["C2"]
    url = reverse("dashboard:child_flatten", args=[c2.pk])

    page = _text(staff_client.get(url))
    assert '<span class="side-SELL">SELL</span> 300 · MARKET' in page

    staff_client.post(url, {"reason": ""})
    assert not OrderMapping.objects.filter(reason_code="flatten").exists()

    response = staff_client.post(url, {"reason": "mandate ended"})

    assert response.status_code == 302
    mapping = OrderMapping.objects.get(reason_code="flatten")
    assert (mapping.side, mapping.quantity, mapping.status) == ("SELL", 300, MappingStatus.PLANNED)
    assert ReplicationEvent.objects.get(kind="child_flattened").actor == "ops"


def test_charts_render_success_rate_and_latency(staff_client, desk):
    OrderMapping.objects.filter(child=desk.children["C5"], quantity__gt=0).update(
        status=MappingStatus.REJECTED
    )

    page = _text(staff_client.get(reverse("dashboard:charts"), {"days": "1"}))

    assert 'aria-label="Child order success rate"' in page
    assert "<title>C5: 1 rejected or failed</title>" in page
    assert "<title>C2: 1 filled or accepted</title>" in page
    assert "n = 4 · p50" in page  # C1, C2, C4, C5 were acknowledged (C3 was skipped)
