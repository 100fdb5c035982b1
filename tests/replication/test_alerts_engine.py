"""Issue 14 item 2 (alerts): a dead channel never slows a tick (the tick never calls a channel;
the delivery task records the failure, retries, then gives up), and the engine's failures that
people must hear of become alerts. Driven through `Orchestrator.run_tick` on the paper desk, the
scanner task and the delivery task."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker
from brokers.errors import OrderRejected
from replication.alerts.models import (
    Alert,
    AlertDelivery,
    AlertKind,
    AlertSubscription,
    Channel,
    DeliveryStatus,
)
from replication.alerts.tasks import alert_deliver_task, alerts_scan_task
from replication.login_check import login_check_task
from replication.models import ReplicationEvent
from replication.orchestrator import Orchestrator
from tests.alerts_fakes import refused_url, silent_url, telegram  # noqa: F401  (fixtures)
from tests.engine_helpers import FUT

pytestmark = pytest.mark.django_db

TOKEN = "987654:SECRET-token-for-tests"
TIMEOUT = 3.0  # the channel's timeout: a tick that waited on the channel would take at least this


def _ops_on_telegram(kinds: list[str] | None = None) -> AlertSubscription:
    ops = get_user_model().objects.create_user("ops", "ops@example.test", "pw", is_staff=True)
    return AlertSubscription.objects.create(
        user=ops, channel=Channel.TELEGRAM, address="42", kinds=kinds or []
    )


def _reject_c2(faults) -> None:
    def reject(user: str, req: object) -> None:
        if user == "C2":
            raise OrderRejected("RMS: margin exceeds")

    faults.before_place = reject


@pytest.mark.parametrize("dead", ["refused", "silent"])
def test_alerts_dead_channel_never_delays_a_tick(desk, orch, faults, dead, refused_url, silent_url, caplog):  # noqa: F811
    """Issue 14 item 2: with the Telegram server refusing connections or never answering, a tick
    with a rejected child order takes no longer than usual and opens no connection to it; the
    delivery task records the failure, is due again after the backoff, and gives up after
    ALERT_MAX_ATTEMPTS with an audit row; the bot token is in no error and no log line."""
    root = refused_url if dead == "refused" else silent_url.url
    _ops_on_telegram()
    with override_settings(
        TELEGRAM_API_ROOT=root,
        TELEGRAM_BOT_TOKEN=TOKEN,
        ALERT_CHANNEL_TIMEOUT_SECONDS=TIMEOUT,
        ALERT_SCAN_SPAN_SECONDS=0,
        ALERT_MAX_ATTEMPTS=2,
        ALERT_RETRY_SECONDS=(0,),
        ALERT_CLAIM_SECONDS=0,
    ):
        orch.run_tick()
        alerts_scan_task()  # earlier rows out of the way
        _reject_c2(faults)
        desk.place("BUY", FUT, 75)
        started = time.perf_counter()
        result = orch.run_tick()
        took = time.perf_counter() - started
        assert result.leader and not result.errors
        assert ReplicationEvent.objects.filter(kind="send_rejected", account=desk.children["C2"]).exists()
        assert took < TIMEOUT and result.duration_ms < TIMEOUT * 1000
        assert silent_url.connections() == 0  # the tick never reached for a channel
        alerts_scan_task()  # the scanner queues the delivery; it fails (the task runs inline in tests)
        delivery = AlertDelivery.objects.get()
        assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
        assert "telegram unreachable" in delivery.last_error
        if dead == "silent":
            assert silent_url.connections() == 1 and "timed out" in delivery.last_error
        assert not ReplicationEvent.objects.filter(kind="alert_sent").exists()
        started = time.perf_counter()
        orch.run_tick()  # a tick while the delivery is failing: still fast
        assert time.perf_counter() - started < TIMEOUT
        alert_deliver_task(delivery.pk)  # the retry: the last attempt
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.GAVE_UP and delivery.attempts == 2
        assert alert_deliver_task(delivery.pk).endswith("not due")  # given up: never sent again
    gave_up = ReplicationEvent.objects.get(kind="alert_gave_up")
    assert gave_up.account == desk.children["C2"] and gave_up.data["attempts"] == 2
    assert not ReplicationEvent.objects.filter(kind="alert_sent").exists()
    assert TOKEN not in delivery.last_error and TOKEN not in gave_up.message
    assert TOKEN not in caplog.text


@pytest.fixture
def bot(telegram):  # noqa: F811
    with override_settings(
        TELEGRAM_API_ROOT=telegram.url, TELEGRAM_BOT_TOKEN=TOKEN, ALERT_SCAN_SPAN_SECONDS=0
    ):
        yield telegram


def _kinds_sent(bot) -> list[str]:
    return [m["text"].split("\n")[0] for m in bot.messages]


def test_alerts_breaker_tripped(desk, orch, faults, bot):
    """Issue 14 item 2: a circuit breaker tripped by repeated failures is an alert for the child."""
    _ops_on_telegram([AlertKind.BREAKER_TRIPPED])
    orch.run_tick()
    _reject_c2(faults)
    for _ in range(3):
        desk.place("BUY", FUT, 75)
        orch.run_tick()
    alerts_scan_task()
    assert _kinds_sent(bot) == ["[PMS] Circuit breaker tripped: C2 (paper:C2)"]


def test_alerts_engine_halted_and_ticks_failing(desk, orch, faults, bot):
    """Issue 14 item 2: a failing tick (the master unreadable) and a staff halt of the engine are
    alerts for staff."""
    from replication.controls import engine_control_update

    _ops_on_telegram([AlertKind.ENGINE_HALTED, AlertKind.ENGINE_UNHEALTHY])
    faults.reads_down.add("MASTER")
    assert orch.run_tick().errors
    engine_control_update(actor="ops", halted=True)
    alerts_scan_task()
    sent = _kinds_sent(bot)
    assert sorted(sent) == ["[PMS] Engine halted: engine", "[PMS] Lease lost or ticks failing: engine"]
    assert any("failed" in m["text"] and "master" in m["text"].lower() for m in bot.messages)


def test_alerts_lease_lost(desk, faults, bot):
    """Issue 14 item 2: an engine that stops renewing its lease (killed, hung) is an alert."""
    _ops_on_telegram([AlertKind.ENGINE_UNHEALTHY])
    from replication.models import OrchestratorLease

    dying = Orchestrator(holder="dying", workers=0, lease_ttl=timedelta(minutes=1))
    dying.run_tick()  # never closed: the lease is left held
    with override_settings(ALERT_LEASE_STALE_SECONDS=0):
        alerts_scan_task()
        assert bot.messages == []  # still fresh
        # A minute later with no renewal (moved, not slept: a slow first tick cannot make it stale early).
        lease = OrchestratorLease.objects.get(holder="dying")
        OrchestratorLease.objects.filter(pk=lease.pk).update(
            expires_at=lease.expires_at - timedelta(minutes=2)
        )
        alerts_scan_task()
        alerts_scan_task()  # still lost: one message per window
    assert len(bot.messages) == 1 and "lease lost: dying" in bot.messages[0]["text"]


def test_alerts_exit_owed_too_long(desk, orch, faults, bot):
    """Issue 14 item 2: an exit owed longer than ALERT_EXIT_OWED_SECONDS (here a halted child after
    the master exited) is an alert for that child, once per window while it lasts."""
    _ops_on_telegram([AlertKind.EXIT_OWED])
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    c2 = desk.children["C2"]
    Account.objects.filter(pk=c2.pk).update(status=AccountStatus.HALTED)
    desk.place("SELL", FUT, 150)
    orch.run_tick()
    orch.run_tick()
    with override_settings(ALERT_EXIT_OWED_SECONDS=3600):
        alerts_scan_task()
    assert bot.messages == []  # owed, but not for long yet
    with override_settings(ALERT_EXIT_OWED_SECONDS=0):
        alerts_scan_task()
        alerts_scan_task()
    assert _kinds_sent(bot) == ["[PMS] Exit owed too long: C2 (paper:C2)"]
    assert "NIFTY25DECFUT" in bot.messages[0]["text"]
    assert Alert.objects.get().suppressed == 0  # an ongoing state is not counted as suppressed


def test_alerts_login_missing_at_pre_open_check(bot):
    """Issue 14 item 2: an account the pre-open login check finds without a live session is an
    alert (staff), by the check's own audit row."""
    _ops_on_telegram([AlertKind.LOGIN_MISSING])
    Account.objects.create(broker=Broker.KITE, broker_user_id="ZX1234", display_name="Kite child")
    login_check_task(now=timezone.now())
    alerts_scan_task()
    assert _kinds_sent(bot) == ["[PMS] Broker login missing: Kite child (kite:ZX1234)"]
