"""Alert writes: one alert per (kind, scope) per window, its deliveries, their outcomes (each sent
alert is an audit row), and the summary of what a window suppressed."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Account, Ownership
from replication.alerts.channels import ChannelError, channel_send
from replication.alerts.detect import Fact, event_facts, state_facts, tick_facts
from replication.alerts.models import (
    Alert,
    AlertCursor,
    AlertDelivery,
    AlertKind,
    AlertSubscription,
    DeliveryStatus,
)
from replication.services.audit_log import EventKind, audit

logger = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
NOTES_KEPT = 20  # suppressed facts quoted in a summary; the rest are counted


def subscriptions_for(*, kind: str, account: Account | None) -> list[AlertSubscription]:
    """Enabled subscriptions of active users that want `kind` about `account` (None: the engine).
    Staff hear of everything; anyone else only of an account they own that is not a pending claim."""
    subs = AlertSubscription.objects.filter(enabled=True, user__is_active=True).select_related("user")
    if account is None or account.ownership == Ownership.PENDING or account.owner_id is None:
        subs = subs.filter(user__is_staff=True)
    else:
        subs = subs.filter(Q(user__is_staff=True) | Q(user_id=account.owner_id))
    return [sub for sub in subs.order_by("pk") if sub.wants(kind) and sub.destination()]


def _who(account: Account | None) -> str:
    if account is None:
        return "engine"
    return f"{account.display_name or account.broker_user_id} ({account.broker}:{account.broker_user_id})"


def _deliveries(
    alert: Alert, *, summary: bool, subject: str, body: str, now: datetime
) -> list[AlertDelivery]:
    rows = [
        AlertDelivery(
            alert=alert,
            subscription=sub,
            summary=summary,
            channel=sub.channel,
            address=sub.destination(),
            subject=subject,
            body=body,
            next_attempt_at=now,
            created_at=now,
        )
        for sub in subscriptions_for(kind=alert.kind, account=alert.account)
    ]
    return AlertDelivery.objects.bulk_create(rows)


def alert_raise(*, fact: Fact, now: datetime) -> Alert | None:
    """Open an alert for `fact` and its deliveries, or count it as suppressed in the open window of
    its kind and scope. Returns the new alert, or None when it was suppressed or ongoing."""
    open_alert = Alert.objects.filter(kind=fact.kind, scope=fact.scope, closed_at__isnull=True).first()
    if open_alert is not None:
        if not fact.ongoing:
            notes = list(open_alert.suppressed_notes)
            if len(notes) < NOTES_KEPT:
                notes.append(f"{timezone.localtime(now, IST):%H:%M:%S} {fact.message[:300]}")
            Alert.objects.filter(pk=open_alert.pk).update(
                suppressed=F("suppressed") + 1, suppressed_notes=notes
            )
        return None
    account = Account.objects.filter(pk=fact.account_id).first() if fact.account_id is not None else None
    label = AlertKind(fact.kind).label
    subject = f"[PMS] {label}: {_who(account)}"
    at = timezone.localtime(now, IST)
    body = (
        f"{label} ({fact.kind}) for {_who(account)} at {at:%Y-%m-%d %H:%M:%S} IST.\n\n"
        f"{fact.message}\n\n"
        f"More alerts of this kind for {_who(account)} are held for {settings.ALERT_WINDOW_SECONDS}s "
        "and then summed up in one message."
    )
    alert = Alert.objects.create(
        kind=fact.kind,
        scope=fact.scope,
        account=account,
        opened_at=now,
        closes_at=now + timedelta(seconds=settings.ALERT_WINDOW_SECONDS),
        subject=subject[:200],
        message=fact.message,
        source_event_id=fact.event_id,
    )
    _deliveries(alert, summary=False, subject=subject[:200], body=body, now=now)
    return alert


def alerts_close_windows(*, now: datetime) -> int:
    """Close every window that has ended; one summary per window that suppressed something."""
    closed = 0
    for alert in Alert.objects.filter(closed_at__isnull=True, closes_at__lte=now).select_related("account"):
        Alert.objects.filter(pk=alert.pk).update(closed_at=now)
        closed += 1
        if not alert.suppressed:
            continue
        label = AlertKind(alert.kind).label
        subject = f"[PMS] {alert.suppressed} more: {label}: {_who(alert.account)}"
        held = len(alert.suppressed_notes)
        more = f"\n... and {alert.suppressed - held} more" if alert.suppressed > held else ""
        opened, closes = timezone.localtime(alert.opened_at, IST), timezone.localtime(alert.closes_at, IST)
        body = (
            f"{alert.suppressed} more {label.lower()} ({alert.kind}) alerts for {_who(alert.account)} "
            f"were held back between {opened:%H:%M:%S} and {closes:%H:%M:%S} IST:\n\n"
            + "\n".join(alert.suppressed_notes)
            + more
        )
        _deliveries(alert, summary=True, subject=subject[:200], body=body, now=now)
    return closed


def alerts_scan(*, now: datetime | None = None) -> list[int]:
    """One scanner pass, in one transaction that holds the cursor: close ended windows, raise the
    facts found since the cursor and in the state tables, move the cursor. Returns the ids of the
    deliveries now due (the caller queues them once this has committed)."""
    now = now or timezone.now()
    with transaction.atomic():
        AlertCursor.objects.get_or_create(name="scanner")
        cursor = AlertCursor.objects.select_for_update().get(name="scanner")
        alerts_close_windows(now=now)
        events, cursor.last_event_id = event_facts(after_id=cursor.last_event_id)
        ticks, cursor.last_tick_id = tick_facts(after_id=cursor.last_tick_id, now=now)
        for fact in [*events, *ticks, *state_facts(now=now)]:
            alert_raise(fact=fact, now=now)
        cursor.scanned_at = now
        cursor.save()
        return deliveries_due(now=now)


def deliveries_due(*, now: datetime) -> list[int]:
    """Pending deliveries due now and not queued within the claim time; marks them queued."""
    claim = timedelta(seconds=settings.ALERT_CLAIM_SECONDS)
    due = AlertDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now).filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - claim)
    )
    ids = list(due.order_by("pk").values_list("pk", flat=True))
    AlertDelivery.objects.filter(pk__in=ids).update(enqueued_at=now)
    return ids


def _retry_delay(attempts: int) -> int:
    delays = settings.ALERT_RETRY_SECONDS
    return int(delays[min(attempts, len(delays)) - 1]) if delays else 0


def _audit_delivery(delivery: AlertDelivery, *, kind: EventKind, message: str) -> None:
    """The audit row of a delivery's end (sent or given up), through the audit writer."""
    data = {
        "alert_id": delivery.alert_id,
        "delivery_id": delivery.pk,
        "alert_kind": delivery.alert.kind,
        "channel": delivery.channel,
        "summary": delivery.summary,
        "attempts": delivery.attempts,
    }
    audit(kind=kind, actor="alerts", message=message, data=data, account_id=delivery.alert.account_id)


def alert_deliver(*, delivery_id: int, now: datetime | None = None) -> str:
    """Claim one due delivery (conditional update), send it outside any transaction, record the
    outcome: sent (audited), due again after a backoff, or given up (audited) after
    ALERT_MAX_ATTEMPTS or a permanent error."""
    now = now or timezone.now()
    claimed = AlertDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(
        attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=settings.ALERT_CLAIM_SECONDS)
    )
    if not claimed:
        return f"delivery {delivery_id}: not due"
    delivery = AlertDelivery.objects.select_related("alert").get(pk=delivery_id)
    try:
        channel_send(
            channel=delivery.channel, address=delivery.address, subject=delivery.subject, body=delivery.body
        )
    except ChannelError as exc:
        return _delivery_failed(delivery, exc)
    with transaction.atomic():
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.SENT, sent_at=timezone.now(), last_error=""
        )
        what = "summary" if delivery.summary else "alert"
        message = f"{what} sent by {delivery.channel}: {delivery.subject}"
        _audit_delivery(delivery, kind=EventKind.ALERT_SENT, message=message)
    return f"delivery {delivery_id}: sent by {delivery.channel}"


def _delivery_failed(delivery: AlertDelivery, exc: ChannelError) -> str:
    error = str(exc)[:1000]
    if exc.permanent or delivery.attempts >= settings.ALERT_MAX_ATTEMPTS:
        with transaction.atomic():
            AlertDelivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.GAVE_UP, last_error=error
            )
            _audit_delivery(
                delivery,
                kind=EventKind.ALERT_GAVE_UP,
                message=f"gave up after {delivery.attempts} attempt(s) by {delivery.channel}: {error}",
            )
        logger.error("alert delivery %s by %s given up: %s", delivery.pk, delivery.channel, error)
        return f"delivery {delivery.pk}: given up ({error})"
    retry_at = timezone.now() + timedelta(seconds=_retry_delay(delivery.attempts))
    AlertDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=retry_at, last_error=error)
    logger.warning(
        "alert delivery %s by %s failed (attempt %s): %s",
        delivery.pk,
        delivery.channel,
        delivery.attempts,
        error,
    )
    return f"delivery {delivery.pk}: failed, retry at {retry_at:%H:%M:%S} ({error})"
