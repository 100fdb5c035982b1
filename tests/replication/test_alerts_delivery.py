"""Issue 14 item 2 (alerts): delivery on each channel against local servers, deduplication, the
rate limit's summary, and client subscriptions that only ever hear of their own accounts. Driven
through `Orchestrator.run_tick` on the paper desk, the scanner task and the delivery task."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from brokers.errors import OrderRejected
from replication.alerts.models import (
    Alert,
    AlertDelivery,
    AlertKind,
    AlertSubscription,
    Channel,
    DeliveryStatus,
)
from replication.alerts.tasks import alerts_scan_task
from replication.controls import engine_control_update
from replication.models import ReplicationEvent
from tests.alerts_fakes import smtp_server, telegram  # noqa: F401  (fixtures)
from tests.engine_helpers import FUT

pytestmark = pytest.mark.django_db

TOKEN = "123456:TEST-bot-token-never-logged"


def _user(name: str, *, staff: bool = False):
    return get_user_model().objects.create_user(name, f"{name}@example.test", "pw", is_staff=staff)


def _subscribe(user, channel: str, address: str = "", kinds: list[str] | None = None) -> AlertSubscription:
    return AlertSubscription.objects.create(user=user, channel=channel, address=address, kinds=kinds or [])


def _reject(faults, *users: str) -> None:
    def reject(user: str, req: object) -> None:
        if user in users:
            raise OrderRejected("RMS: margin exceeds")

    faults.before_place = reject


def _rejected_entry(desk, orch, quantity: int = 75) -> None:
    """One master entry the children copy; the rejecting children's orders are refused. One lot
    reaches C2 only; five lots reach C2, C3, C4 and C5 (DESIGN §3.6 desk)."""
    desk.place("BUY", FUT, quantity)
    orch.run_tick()


@pytest.fixture
def bot(telegram):  # noqa: F811
    with override_settings(
        TELEGRAM_API_ROOT=telegram.url, TELEGRAM_BOT_TOKEN=TOKEN, ALERT_SCAN_SPAN_SECONDS=0
    ):
        yield telegram


def test_alerts_email_reaches_local_smtp_server(desk, orch, faults, smtp_server):  # noqa: F811
    """Issue 14 item 2: a rejected child order is mailed through Django's SMTP backend to a real
    SMTP server on 127.0.0.1, and the sent alert is an audit row."""
    staff = _user("ops", staff=True)
    _subscribe(staff, Channel.EMAIL)
    orch.run_tick()
    _reject(faults, "C2")
    _rejected_entry(desk, orch)
    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=smtp_server.port,
        EMAIL_USE_TLS=False,
        EMAIL_HOST_USER="",
        EMAIL_HOST_PASSWORD="",
        ALERT_SCAN_SPAN_SECONDS=0,
    ):
        alerts_scan_task()
    assert len(smtp_server.mails) == 1
    mail = smtp_server.mails[0]
    assert mail["to"] == ["ops@example.test"]
    assert "Child order rejected" in mail["data"] and "C2" in mail["data"]
    assert "RMS: margin exceeds" in mail["data"]
    sent = ReplicationEvent.objects.filter(kind="alert_sent")
    assert sent.count() == 1
    assert sent.get().account == desk.children["C2"]
    assert sent.get().data["channel"] == "email"


def test_alerts_telegram_reaches_local_bot_api(desk, orch, faults, bot):
    """Issue 14 item 2: the same alert by Telegram: sendMessage under TELEGRAM_API_ROOT with the
    bot token in the path and the subscriber's chat id."""
    _subscribe(_user("ops", staff=True), Channel.TELEGRAM, "-1001")
    orch.run_tick()
    _reject(faults, "C2")
    _rejected_entry(desk, orch)
    alerts_scan_task()
    assert bot.paths == [f"/bot{TOKEN}/sendMessage"]
    assert bot.messages[0]["chat_id"] == "-1001"
    assert "Child order rejected" in bot.messages[0]["text"] and "C2" in bot.messages[0]["text"]
    assert ReplicationEvent.objects.filter(kind="alert_sent", account=desk.children["C2"]).count() == 1
    assert AlertDelivery.objects.get().status == DeliveryStatus.SENT


def test_alerts_one_message_per_kind_and_account_per_window(desk, orch, faults, bot):
    """Issue 14 item 2: rejections of C2 and C3, then another of C2, in one window are two messages
    (one per account); the later C2 rejection is counted as suppressed, not sent."""
    _subscribe(_user("ops", staff=True), Channel.TELEGRAM, "7", kinds=[AlertKind.ORDER_REJECTED])
    orch.run_tick()
    _reject(faults, "C2", "C3")
    _rejected_entry(desk, orch, 375)
    alerts_scan_task()
    _rejected_entry(desk, orch)
    alerts_scan_task()
    texts = sorted(m["text"] for m in bot.messages)
    assert len(texts) == 2
    assert "(paper:C2)" in texts[0] and "(paper:C3)" in texts[1]
    c2 = Alert.objects.get(kind=AlertKind.ORDER_REJECTED, account=desk.children["C2"])
    assert c2.suppressed == 1
    assert ReplicationEvent.objects.filter(kind="alert_sent").count() == 2


def test_alerts_rate_limit_then_summary_when_window_ends(desk, orch, faults, bot):
    """Issue 14 item 2: when the window ends, one summary says what was suppressed; the next
    rejection after it opens a new window and is sent again."""
    _subscribe(_user("ops", staff=True), Channel.TELEGRAM, "7", kinds=[AlertKind.ORDER_REJECTED])
    with override_settings(ALERT_WINDOW_SECONDS=2, BREAKER_THRESHOLD=100):  # C2 keeps trading
        orch.run_tick()
        _reject(faults, "C2")
        for _ in range(3):
            _rejected_entry(desk, orch)
            alerts_scan_task()
        assert len(bot.messages) == 1
        time.sleep(2.1)
        alerts_scan_task()  # the window has ended: its summary
        assert len(bot.messages) == 2
        summary = bot.messages[1]["text"]
        assert "2 more" in summary and "C2" in summary and "order_rejected" in summary
        alerts_scan_task()  # a summary is sent once
        assert len(bot.messages) == 2
        _rejected_entry(desk, orch)
        alerts_scan_task()
    assert len(bot.messages) == 3
    assert "2 more" not in bot.messages[2]["text"] and "Child order rejected" in bot.messages[2]["text"]
    assert ReplicationEvent.objects.filter(kind="alert_sent").count() == 3
    assert ReplicationEvent.objects.filter(kind="alert_sent", data__summary=True).count() == 1


def test_alerts_client_subscription_sees_only_own_accounts(desk, orch, faults, bot):
    """Issue 14 item 2: a client's subscription hears of the accounts the client owns and nothing
    else (not another client's account, not the engine); staff hear of all."""
    alice, bob = _user("alice"), _user("bob")
    desk.children["C2"].owner = alice
    desk.children["C2"].save(update_fields=["owner"])
    desk.children["C3"].owner = bob
    desk.children["C3"].save(update_fields=["owner"])
    _subscribe(alice, Channel.TELEGRAM, "alice-chat")
    _subscribe(bob, Channel.TELEGRAM, "bob-chat", kinds=[AlertKind.BREAKER_TRIPPED])
    _subscribe(_user("ops", staff=True), Channel.TELEGRAM, "ops-chat")
    orch.run_tick()
    _reject(faults, "C2", "C3", "C5")
    _rejected_entry(desk, orch, 375)
    engine_control_update(actor="ops", halted=True)
    alerts_scan_task()
    by_chat: dict[str, list[str]] = {}
    for message in bot.messages:
        by_chat.setdefault(message["chat_id"], []).append(message["text"])
    assert len(by_chat["alice-chat"]) == 1 and "(paper:C2)" in by_chat["alice-chat"][0]
    assert "(paper:C3)" not in by_chat["alice-chat"][0] and "halted" not in by_chat["alice-chat"][0]
    assert "bob-chat" not in by_chat  # bob owns C3 but only asked for breaker alerts
    ops = by_chat["ops-chat"]
    assert len(ops) == 4  # C2, C3 and C5 rejected, and the engine halted
    assert sum("Engine halted" in t for t in ops) == 1
