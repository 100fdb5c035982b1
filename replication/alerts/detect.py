"""What is worth an alert: audit rows after the cursor, finished ticks after the cursor, and two
state checks (exits owed too long, a lease nobody renews). Reads only; nothing here writes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from replication.alerts.models import AlertKind
from replication.lease import LEASE_NAME
from replication.models import Entitlement, OrchestratorLease, ReplicationEvent, TickRun

BATCH = 1000


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing to tell people about. `ongoing`: a state that holds until fixed (one alert per
    window while it lasts, never counted as suppressed)."""

    kind: AlertKind
    account_id: int | None
    message: str
    event_id: int | None = None
    ongoing: bool = False

    @property
    def scope(self) -> str:
        return f"account:{self.account_id}" if self.account_id is not None else "engine"


def _changed_on(data: dict[str, Any], flag: str) -> bool:
    change = data.get(flag)
    return isinstance(change, dict) and change.get("after") is True


def event_fact(event: ReplicationEvent) -> Fact | None:
    """The alert an audit row raises, if any."""
    kind, data = event.kind, event.data if isinstance(event.data, dict) else {}
    found: AlertKind | None = None
    if kind == "send_rejected" or (kind == "order_update" and data.get("status") == "rejected"):
        found = AlertKind.ORDER_REJECTED
    elif kind in ("account.login_needed", "account_needs_login"):
        found = AlertKind.LOGIN_MISSING
    elif kind == "reconciliation_drift" and data.get("grade") == "major":
        found = AlertKind.MAJOR_DRIFT
    elif kind == "breaker_tripped":
        found = AlertKind.BREAKER_TRIPPED
    elif kind == "engine.control_changed" and _changed_on(data, "halted"):
        return Fact(AlertKind.ENGINE_HALTED, None, f"{event.message} (by {event.actor})", event.pk)
    if found is None:
        return None
    return Fact(found, event.account_id, event.message or kind, event.pk)


def event_facts(*, after_id: int) -> tuple[list[Fact], int]:
    """Facts from the audit rows after `after_id`, and the id to resume after."""
    rows = list(
        ReplicationEvent.objects.filter(pk__gt=after_id)
        .order_by("pk")
        .only("pk", "kind", "account_id", "message", "actor", "data")[:BATCH]
    )
    facts = [fact for fact in map(event_fact, rows) if fact is not None]
    return facts, (rows[-1].pk if rows else after_id)


def tick_facts(*, after_id: int, now: datetime) -> tuple[list[Fact], int]:
    """Failed ticks (an error, the lease lost mid-tick, or one that never finished) after `after_id`.
    The cursor stops before a tick still running, unless it has run too long to be alive."""
    stale = now - timedelta(seconds=settings.ALERT_LEASE_STALE_SECONDS)
    facts: list[Fact] = []
    last = after_id
    for tick in TickRun.objects.filter(pk__gt=after_id).order_by("pk")[:BATCH]:
        if tick.outcome == TickRun.Outcome.RUNNING:
            if tick.started_at > stale:
                break
            never = f"tick {tick.pk} never finished ({tick.holder})"
            facts.append(Fact(AlertKind.ENGINE_UNHEALTHY, None, never))
        elif tick.outcome == TickRun.Outcome.ERROR:
            facts.append(Fact(AlertKind.ENGINE_UNHEALTHY, None, f"tick {tick.pk} failed: {tick.error[:300]}"))
        elif tick.outcome == TickRun.Outcome.NOT_LEADER and tick.error:
            facts.append(Fact(AlertKind.ENGINE_UNHEALTHY, None, f"tick {tick.pk}: {tick.error[:300]}"))
        last = tick.pk
    return facts, last


def state_facts(*, now: datetime) -> list[Fact]:
    """Exits owed longer than ALERT_EXIT_OWED_SECONDS (one fact per child) and a lease whose holder
    stopped renewing it more than ALERT_LEASE_STALE_SECONDS ago (released leases are fine)."""
    facts: list[Fact] = []
    owed_before = now - timedelta(seconds=settings.ALERT_EXIT_OWED_SECONDS)
    owed: dict[int, list[str]] = defaultdict(list)
    for row in Entitlement.objects.filter(owed_since__lte=owed_before).order_by("child_id", "pk"):
        since = int((now - row.owed_since).total_seconds()) if row.owed_since else 0
        why = f" ({row.hold_reason})" if row.hold_reason else ""
        owed[row.child_id].append(
            f"{row.exchange}:{row.tradingsymbol} {row.product}: holds {row.held}, entitled {row.quantity}, "
            f"owed for {since}s{why}"
        )
    for child_id, lines in owed.items():
        facts.append(Fact(AlertKind.EXIT_OWED, child_id, "exit owed: " + "; ".join(lines), ongoing=True))
    stale = now - timedelta(seconds=settings.ALERT_LEASE_STALE_SECONDS)
    lease = OrchestratorLease.objects.filter(name=LEASE_NAME).exclude(holder="").first()
    if lease is not None and lease.expires_at is not None and lease.expires_at < stale:
        facts.append(
            Fact(
                AlertKind.ENGINE_UNHEALTHY,
                None,
                f"lease lost: {lease.holder} stopped renewing it (expired {lease.expires_at:%H:%M:%S} UTC); "
                "no engine is ticking",
                ongoing=True,
            )
        )
    return facts
