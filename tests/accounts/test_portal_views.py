"""What a client sees and does in the portal, on the paper desk of DESIGN §3.6 (future at ₹20,000,
lot 75) driven by the real engine (Orchestrator.run_tick): today's copy trades with fills and
slippage, reasons in plain words with their codes, positions entitled against held, the P&L of the
replicated trades, limits that only tighten, pause and resume, consent, the daily Kite login.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AccountStatus
from accounts.services import account_set_status, consent_version_current
from replication.models import EventKind, MappingStatus, OrderMapping, ReplicationEvent
from tests.dashboard_helpers import FUT, close_by_hand
from tests.engine_helpers import set_price
from tests.factories import KiteAccountFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(desk):
    """Carol owns C2 (₹20,00,000) and C3 (₹2,50,000: below one lot in the worked example)."""
    user = UserFactory(username="carol")
    for name in ("C2", "C3"):
        desk.children[name].owner = user
        desk.children[name].save(update_fields=["owner"])
    return user


@pytest.fixture
def signed_in(client, carol):
    client.force_login(carol)
    return client


def _page(client, account) -> str:
    response = client.get(reverse("portal:account", args=[account.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _entry(desk, orch, *, child_price: str | None = None) -> None:
    """Baseline tick, the master buys 2 lots at ₹20,000; the children's orders fill at `child_price`."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    if child_price:
        set_price(FUT, child_price)
    orch.run_tick()
    orch.run_tick()


def _events(account, kind):
    return list(ReplicationEvent.objects.filter(account=account, kind=kind).order_by("id"))


# --- Today's copy trades ------------------------------------------------------------------------


def test_copy_trades_show_the_master_event_the_clients_order_its_fill_and_slippage(desk, orch, signed_in):
    _entry(desk, orch, child_price="20010")
    body = _page(signed_in, desk.children["C2"])
    order = OrderMapping.objects.get(child=desk.children["C2"])
    assert order.status == MappingStatus.FILLED and order.quantity == 300
    assert f'data-trade="{order.tag}" data-status="filled"' in body
    assert "BUY</span> 150 NFO:" + FUT in body  # the master's event
    assert "BUY</span> 300" in body and "(4 lots)" in body  # Carol's order
    assert "20,000.00" in body  # the master's fill
    assert "20,010.00" in body  # Carol's fill
    assert '<span class="worse">10.00</span>' in body  # paid ₹10 a unit more than the master


def test_a_skipped_trade_says_why_in_plain_words_with_the_code_beside_it(desk, orch, signed_in):
    _entry(desk, orch)
    body = _page(signed_in, desk.children["C3"])
    assert 'data-status="skipped" data-outcome="skipped"' in body
    assert "Your share came to less than one lot" in body
    assert '<span class="code">below_one_unit</span>' in body


def test_a_reduced_trade_is_marked_reduced_with_its_reason(desk, orch, signed_in):
    c2 = desk.children["C2"]
    c2.max_lots_per_order = 2
    c2.save(update_fields=["max_lots_per_order"])
    _entry(desk, orch)
    body = _page(signed_in, c2)
    assert OrderMapping.objects.get(child=c2).quantity == 150
    assert 'data-outcome="reduced"' in body
    assert "Reduced to your limit of lots per order" in body and "max_lots_per_order" in body


def test_copy_trades_list_only_today(desk, orch, signed_in):
    _entry(desk, orch)
    yesterday = timezone.now() - timedelta(days=1)
    OrderMapping.objects.filter(child=desk.children["C2"]).update(created_at=yesterday)
    assert "No trades copied into this account today." in _page(signed_in, desk.children["C2"])


# --- Positions and P&L --------------------------------------------------------------------------


def test_positions_show_entitled_against_held(desk, orch, signed_in):
    _entry(desk, orch)
    c2 = desk.children["C2"]
    assert f'data-instrument="NFO:{FUT}" data-entitled="300" data-held="300"' in _page(signed_in, c2)
    # The master sells half: Carol is entitled to 150; once the exit fills she holds 150.
    desk.place("SELL", FUT, 75)
    orch.run_tick()
    orch.run_tick()
    assert f'data-instrument="NFO:{FUT}" data-entitled="150" data-held="150"' in _page(signed_in, c2)


def test_an_exit_still_owed_shows_entitled_below_held_and_why(desk, orch, signed_in):
    """Staff halted C2 (nothing is sent): the master sells half, so Carol is entitled to 150 but
    still holds 300; the page says an exit is owed and why it waits."""
    _entry(desk, orch)
    c2 = desk.children["C2"]
    account_set_status(account=c2, status=AccountStatus.HALTED, actor="desk", reason="checking")
    desk.place("SELL", FUT, 75)
    orch.run_tick()
    orch.run_tick()
    body = _page(signed_in, c2)
    assert f'data-instrument="NFO:{FUT}" data-entitled="150" data-held="300"' in body
    assert "an exit is owed since" in body


def test_positions_under_a_resting_master_stop_loss_are_as_entitled(desk, orch, signed_in):
    """The master bought and put a stop-loss in the same tick: until the stop-loss fills, Carol
    is entitled to what she holds (the page shows no gap, and no exit owed)."""
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    desk.place("SELL", FUT, 150, order_type="SL-M", trigger=Decimal("19500"))
    for _ in range(3):
        orch.run_tick()
    body = _page(signed_in, desk.children["C2"])
    assert f'data-instrument="NFO:{FUT}" data-entitled="300" data-held="300"' in body
    assert "an exit is owed since" not in body


def test_positions_do_not_count_the_clients_own_trades(desk, orch, signed_in):
    _entry(desk, orch)
    close_by_hand("C2", 300)  # Carol sells at her broker herself: the engine's position is unchanged
    assert 'data-entitled="300" data-held="300"' in _page(signed_in, desk.children["C2"])


def test_pnl_today_and_since_linking_mark_the_open_position_to_the_last_price(desk, orch, signed_in):
    _entry(desk, orch)
    set_price(FUT, "20100")  # +₹100 on 300 held
    body = _page(signed_in, desk.children["C2"])
    assert 'id="pnl-today"><b class="better">₹30,000.00</b>' in body
    assert 'id="pnl-total"><b class="better">₹30,000.00</b>' in body


def test_pnl_since_linking_keeps_earlier_days_and_today_does_not(desk, orch, signed_in):
    _entry(desk, orch)
    c2 = desk.children["C2"]
    yesterday = timezone.now() - timedelta(days=1)
    OrderMapping.objects.filter(child=c2).update(sent_at=yesterday, acked_at=yesterday, finished_at=yesterday)
    set_price(FUT, "19900")  # −₹100 on 300 bought yesterday at 20,000
    body = _page(signed_in, c2)
    assert 'id="pnl-today"><b class="">₹0.00</b>' in body
    assert 'id="pnl-total"><b class="worse">-₹30,000.00</b>' in body


def test_pnl_says_when_it_cannot_be_measured(desk, orch, signed_in, faults):
    _entry(desk, orch)
    faults.reads_down.add("C2")
    faults.calculator_down.add("C2")
    body = _page(signed_in, desk.children["C2"])
    assert 'id="pnl-today"><span class="muted">cannot be measured now' in body
    assert "Last prices are unavailable from your broker just now." in body


# --- Limits: tighten only -----------------------------------------------------------------------


def _limits(client, account, **values):
    data = {
        "max_lots_per_order": "",
        "max_quantity": "",
        "max_order_value": "",
        "max_open_positions": "",
        "daily_loss_limit": "",
        "block_instrument": "",
    }
    for name in data:
        current = getattr(account, name, None)
        if current is not None:
            data[name] = str(current)
    data.update({k: str(v) for k, v in values.items()})
    return client.post(reverse("portal:limits", args=[account.pk]), data)


def test_a_client_sets_and_lowers_limits_audited_under_its_name(desk, signed_in):
    c2 = desk.children["C2"]
    response = _limits(signed_in, c2, max_lots_per_order=3, daily_loss_limit="25000")
    assert response.status_code == 302
    c2.refresh_from_db()
    assert c2.max_lots_per_order == 3 and c2.daily_loss_limit == Decimal("25000")
    response = _limits(signed_in, c2, max_lots_per_order=2)
    c2.refresh_from_db()
    assert c2.max_lots_per_order == 2
    events = _events(c2, EventKind.ACCOUNT_SETTINGS_UPDATED)
    assert [e.actor for e in events] == ["carol", "carol"]
    assert events[-1].data["max_lots_per_order"] == {"before": 3, "after": 2}
    assert "Your limits are tighter now" in signed_in.get(response["Location"]).content.decode()


@pytest.mark.parametrize(
    ("field", "start", "sent", "shown"),
    [
        ("max_lots_per_order", 3, "4", "3"),
        ("max_lots_per_order", 3, "", "3"),  # removing a limit loosens it
        ("max_quantity", 150, "300", "150"),
        ("max_order_value", Decimal("500000"), "500000.01", "₹5,00,000"),
        ("max_open_positions", 2, "", "2"),
        ("daily_loss_limit", Decimal("10000.50"), "20000", "₹10,000.50"),
    ],
)
def test_loosening_a_limit_is_refused_with_a_clear_message_and_nothing_changes(
    desk, signed_in, field, start, sent, shown
):
    c2 = desk.children["C2"]
    setattr(c2, field, start)
    c2.save(update_fields=[field])
    response = _limits(signed_in, c2, **{field: sent})
    assert response.status_code == 400
    body = response.content.decode()
    assert "can only be lowered, never raised or removed" in body
    assert f"(it is {shown} now)" in body
    c2.refresh_from_db()
    assert getattr(c2, field) == start
    assert _events(c2, EventKind.ACCOUNT_SETTINGS_UPDATED) == []


def test_one_loosening_refuses_the_whole_submission(desk, signed_in):
    c2 = desk.children["C2"]
    c2.max_quantity = 150
    c2.save(update_fields=["max_quantity"])
    response = _limits(signed_in, c2, max_quantity=300, max_lots_per_order=1)
    assert response.status_code == 400
    c2.refresh_from_db()
    assert (c2.max_quantity, c2.max_lots_per_order) == (150, None)


def test_a_client_blocks_an_instrument_and_cannot_unblock_it(desk, signed_in):
    c2 = desk.children["C2"]
    response = _limits(signed_in, c2, block_instrument=f"nfo:{FUT.lower()}")
    assert response.status_code == 302
    c2.refresh_from_db()
    assert c2.blocked_instruments == [f"NFO:{FUT}"]
    assert _events(c2, EventKind.ACCOUNT_SETTINGS_UPDATED)[0].actor == "carol"
    # The form has no way to remove one; the page says only the desk can.
    assert "Only the desk can loosen them." in _page(signed_in, c2)


def test_blocking_an_unknown_instrument_is_refused(desk, signed_in):
    c2 = desk.children["C2"]
    response = _limits(signed_in, c2, block_instrument="NFO:NOSUCHFUT")
    assert response.status_code == 400
    assert "Unknown instrument: NFO:NOSUCHFUT" in response.content.decode()
    c2.refresh_from_db()
    assert c2.blocked_instruments == []


def test_a_limit_that_is_not_a_number_is_refused(desk, signed_in):
    response = _limits(signed_in, desk.children["C2"], max_lots_per_order="0")
    assert response.status_code == 400
    desk.children["C2"].refresh_from_db()
    assert desk.children["C2"].max_lots_per_order is None


def test_a_tightened_limit_reduces_the_next_copy_trade(desk, orch, signed_in):
    _limits(signed_in, desk.children["C2"], max_lots_per_order=1)
    _entry(desk, orch)
    assert OrderMapping.objects.get(child=desk.children["C2"]).quantity == 75


# --- Pause and resume ---------------------------------------------------------------------------


def test_a_client_pauses_and_resumes_its_account_audited(desk, signed_in):
    c2 = desk.children["C2"]
    response = signed_in.post(reverse("portal:pause", args=[c2.pk]))
    assert response.status_code == 302
    c2.refresh_from_db()
    assert c2.status == AccountStatus.PAUSED
    body = _page(signed_in, c2)
    assert 'id="resume"' in body and 'id="pause"' not in body
    signed_in.post(reverse("portal:resume", args=[c2.pk]))
    c2.refresh_from_db()
    assert c2.status == AccountStatus.ACTIVE
    events = _events(c2, EventKind.ACCOUNT_STATUS_CHANGED)
    assert [(e.actor, e.data["status"]["after"]) for e in events] == [
        ("carol", "paused"),
        ("carol", "active"),
    ]
    assert "portal" in events[0].data["reason"]


def test_a_paused_account_gets_no_new_entries_but_its_exits_go(desk, orch, signed_in):
    _entry(desk, orch)
    c2 = desk.children["C2"]
    signed_in.post(reverse("portal:pause", args=[c2.pk]))
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    latest = OrderMapping.objects.filter(child=c2).order_by("-id").first()
    assert latest.status == MappingStatus.SKIPPED and latest.reason_code == "child_paused"
    assert "Your account was paused: no new entries" in _page(signed_in, c2)
    desk.place("SELL", FUT, 300)  # the master goes flat
    orch.run_tick()
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 0


def test_a_client_cannot_resume_a_pause_staff_made(desk, signed_in):
    c2 = desk.children["C2"]
    account_set_status(account=c2, status=AccountStatus.PAUSED, actor="desk", reason="margin call")
    body = _page(signed_in, c2)
    assert 'id="resume"' not in body and "only staff may resume it" in body
    response = signed_in.post(reverse("portal:resume", args=[c2.pk]), follow=True)
    c2.refresh_from_db()
    assert c2.status == AccountStatus.PAUSED
    assert "Not resumed: the account was paused by staff" in response.content.decode()


def test_a_kite_account_resumes_only_with_a_live_session(client):
    owner = UserFactory(username="dev")
    kite = KiteAccountFactory(owner=owner, token_obtained_at=timezone.now(), token_expires_at=timezone.now())
    client.force_login(owner)
    client.post(reverse("portal:pause", args=[kite.pk]))
    response = client.post(reverse("portal:resume", args=[kite.pk]), follow=True)
    kite.refresh_from_db()
    assert kite.status == AccountStatus.PAUSED
    assert "log in to Kite first" in response.content.decode()


# --- Consent ------------------------------------------------------------------------------------


def test_withdrawing_consent_is_audited_and_giving_it_needs_the_box_ticked(desk, signed_in):
    c2 = desk.children["C2"]
    signed_in.post(reverse("portal:consent_withdraw", args=[c2.pk]))
    c2.refresh_from_db()
    assert c2.consent_given_at is None and c2.consent_version == ""
    withdrawn = ReplicationEvent.objects.filter(account=c2, data__has_key="consent_given_at").latest("id")
    assert withdrawn.kind == "account.consent_withdrawn"
    assert withdrawn.actor == "carol" and "consent withdrawn" in withdrawn.message
    assert withdrawn.data["consent_given_at"]["after"] is None

    signed_in.post(reverse("portal:consent", args=[c2.pk]), {})  # box not ticked
    c2.refresh_from_db()
    assert c2.consent_given_at is None

    signed_in.post(reverse("portal:consent", args=[c2.pk]), {"agree": "on"})
    c2.refresh_from_db()
    assert c2.consent_given_at is not None and c2.consent_version == consent_version_current()
    given = _events(c2, EventKind.ACCOUNT_CONSENT_GIVEN)
    assert [e.actor for e in given] == ["carol"]


def test_withdrawn_consent_stops_entries_and_exits_still_go(desk, orch, signed_in):
    _entry(desk, orch)
    c2, c1 = desk.children["C2"], desk.children["C1"]
    signed_in.post(reverse("portal:consent_withdraw", args=[c2.pk]))
    c2_orders, c1_orders = (
        OrderMapping.objects.filter(child=c2).count(),
        OrderMapping.objects.filter(child=c1).count(),
    )
    desk.place("BUY", FUT, 150)  # a new entry: C1 follows, Carol's C2 does not
    orch.run_tick()
    orch.run_tick()
    assert (
        not OrderMapping.objects.filter(child=c2, quantity__gt=0)
        .exclude(status=MappingStatus.FILLED)
        .exists()
    )
    assert OrderMapping.objects.filter(child=c2, side="BUY", quantity__gt=0).count() == 1
    assert OrderMapping.objects.filter(child=c1).count() > c1_orders
    assert desk.positions(FUT)["C2"] == 300
    desk.place("SELL", FUT, 300)  # the master goes flat: Carol's 300 still comes out
    orch.run_tick()
    orch.run_tick()
    assert desk.positions(FUT)["C2"] == 0
    assert OrderMapping.objects.filter(child=c2).count() > c2_orders


# --- The broker's daily login -------------------------------------------------------------------


def test_the_kite_login_link_shows_when_the_login_is_due(client):
    owner = UserFactory(username="dev")
    now = timezone.now()
    expired = KiteAccountFactory(owner=owner, token_obtained_at=now - timedelta(days=1), token_expires_at=now)
    live = KiteAccountFactory(
        owner=owner, token_obtained_at=now, token_expires_at=now + timedelta(hours=6), broker_user_id="LIVE1"
    )
    client.force_login(owner)
    assert 'id="login-due"' in _page(client, expired)
    assert reverse("kite:login", args=[expired.pk]) in _page(client, expired)
    assert 'id="login-due"' not in _page(client, live)
    home = client.get(reverse("portal:home")).content.decode()
    assert home.count("due today") == 1


def test_a_paper_account_has_no_broker_login(desk, signed_in):
    body = _page(signed_in, desk.children["C2"])
    assert "Daily Kite login" not in body
