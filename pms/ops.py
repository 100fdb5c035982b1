"""Production shape (issue 14 item 4): `/healthz` for a supervisor, `/metrics` for Prometheus, and the
static files storage the web process serves itself (whitenoise).

The engine runs in another process, so nothing here counts in memory: the collector reads the
database (tick rows, child orders, entitlements, reconciliation audit rows, accounts, the lease)
at scrape time. `/metrics` is staff-only: a staff session, or `Authorization: Bearer <METRICS_TOKEN>`
for Prometheus. `/healthz` needs no sign-in and tells nothing about accounts or the lease holder.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

# whitenoise ships no type information; its storage is Django's manifest storage plus compression.
from whitenoise.middleware import WhiteNoiseMiddleware  # type: ignore[import-untyped]
from whitenoise.storage import CompressedManifestStaticFilesStorage  # type: ignore[import-untyped]

from replication.lease import LEASE_NAME
from replication.login_check import accounts_needing_login
from replication.models import (
    Entitlement,
    MappingStatus,
    OrchestratorLease,
    OrderMapping,
    ReplicationEvent,
    TickRun,
)
from replication.reconciliation import Grade

logger = logging.getLogger(__name__)

QUANTILES = ("0.5", "0.99")
LEASE_FRESH, LEASE_STALE, LEASE_NONE = "fresh", "stale", "none"


# --- static files -------------------------------------------------------------------------------


class StaticFilesStorage(CompressedManifestStaticFilesStorage):  # type: ignore[misc]  # untyped base
    """Hashed, compressed static files from `collectstatic` (served by whitenoise's middleware).

    Where `collectstatic` never ran (no manifest at all: a checkout, the test suite) a page names
    its files unhashed instead of failing to render; `/healthz` then reports `static: missing`. Once
    a manifest exists, a file missing from it is an error as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.collected = bool(self.hashed_files)

    def stored_name(self, name: str) -> str:
        if not self.collected:
            return name
        result: str = super().stored_name(name)
        return result


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]  # untyped base
    """whitenoise's middleware, quiet where `collectstatic` never ran (whitenoise would warn on every
    start, the test suite's clients included): `/healthz` reports `static: missing` instead."""

    def add_files(self, root: str, prefix: str | None = None) -> None:
        if self.autorefresh or Path(root).is_dir():
            super().add_files(root, prefix=prefix)


def static_collected() -> bool:
    """True unless production storage is in use and `collectstatic` has not written its manifest."""
    from django.contrib.staticfiles.storage import staticfiles_storage

    return bool(getattr(staticfiles_storage, "collected", True))


# --- reads --------------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n × q), at least the first
    return ordered[int(min(rank, len(ordered))) - 1]


def lease_state(now: datetime) -> tuple[str, OrchestratorLease | None]:
    """The engine lease: fresh (held and not expired), stale (held, expired) or none (never held or
    released)."""
    lease = OrchestratorLease.objects.filter(name=LEASE_NAME).first()
    if lease is None or not lease.holder or lease.expires_at is None:
        return LEASE_NONE, lease
    return (LEASE_FRESH if lease.expires_at > now else LEASE_STALE), lease


def _window_start(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.METRICS_WINDOW_SECONDS)


class DatabaseCollector(Collector):
    """Every metric read from the database when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from self._ticks(now)
        yield self._event_latency(now)
        yield self._orders(now)
        yield from self._owed_exits(now)
        yield self._major_drifts(now)
        yield self._needing_login(now)
        yield from self._lease(now)

    def _ticks(self, now: datetime) -> Iterator[Metric]:
        rows = list(
            TickRun.objects.filter(finished_at__gte=_window_start(now), duration_ms__isnull=False)
            .exclude(outcome=TickRun.Outcome.NOT_LEADER)
            .values_list("duration_ms", flat=True)
        )
        durations = [ms / 1000 for ms in rows if ms is not None]
        tick = GaugeMetricFamily(
            "pms_tick_duration_seconds",
            f"Engine tick duration over the last {settings.METRICS_WINDOW_SECONDS} s (quantiles of "
            "finished ticks of the leader)",
            labels=["quantile"],
        )
        for q in QUANTILES:
            if durations:
                tick.add_metric([q], quantile(durations, float(q)))
        yield tick
        count = GaugeMetricFamily(
            "pms_ticks_in_window",
            f"Ticks finished in the last {settings.METRICS_WINDOW_SECONDS} s, by outcome",
            labels=["outcome"],
        )
        by_outcome = dict(
            TickRun.objects.filter(finished_at__gte=_window_start(now))
            .values_list("outcome")
            .annotate(n=Count("id"))
            .values_list("outcome", "n")
        )
        for outcome in (TickRun.Outcome.OK, TickRun.Outcome.ERROR, TickRun.Outcome.NOT_LEADER):
            count.add_metric([outcome.value], by_outcome.get(outcome.value, 0))
        yield count
        last = TickRun.objects.filter(finished_at__isnull=False).order_by("-finished_at").first()
        finished = GaugeMetricFamily(
            "pms_tick_last_finished_timestamp_seconds", "When the last engine tick finished (Unix time)"
        )
        if last is not None and last.finished_at is not None:
            finished.add_metric([], last.finished_at.timestamp())
        yield finished

    def _event_latency(self, now: datetime) -> Metric:
        """Master event seen -> the last child's acknowledgement, per allocation sent in the window."""
        per_event = (
            OrderMapping.objects.filter(acked_at__gte=_window_start(now), latency_ms__isnull=False)
            .values("allocation_id")
            .annotate(last_child_ms=Max("latency_ms"))
            .values_list("last_child_ms", flat=True)
        )
        latencies = [ms / 1000 for ms in per_event if ms is not None]
        metric = GaugeMetricFamily(
            "pms_event_to_last_child_seconds",
            "Master order seen to the last child order acknowledged, per master event acknowledged "
            f"in the last {settings.METRICS_WINDOW_SECONDS} s (quantiles)",
            labels=["quantile"],
        )
        for q in QUANTILES:
            if latencies:
                metric.add_metric([q], quantile(latencies, float(q)))
        return metric

    def _orders(self, now: datetime) -> Metric:
        counts = dict(
            OrderMapping.objects.filter(created_at__gte=_window_start(now))
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        metric = GaugeMetricFamily(
            "pms_child_orders",
            f"Child orders planned in the last {settings.METRICS_WINDOW_SECONDS} s, by outcome "
            "(their status now)",
            labels=["outcome"],
        )
        for status in MappingStatus:
            metric.add_metric([status.value], counts.get(status.value, 0))
        return metric

    def _owed_exits(self, now: datetime) -> Iterator[Metric]:
        owed = Entitlement.objects.filter(settled=False, owed_since__isnull=False)
        yield GaugeMetricFamily(
            "pms_owed_exits", "Exits owed: child positions above their entitlement", value=owed.count()
        )
        oldest = owed.order_by("owed_since").values_list("owed_since", flat=True).first()
        age = GaugeMetricFamily("pms_owed_exit_oldest_seconds", "How long the oldest owed exit has been owed")
        age.add_metric([], (now - oldest).total_seconds() if oldest is not None else 0.0)
        yield age

    def _major_drifts(self, now: datetime) -> Metric:
        since = now - timedelta(seconds=settings.METRICS_DRIFT_WINDOW_SECONDS)
        drifts = ReplicationEvent.objects.filter(
            kind="reconciliation_drift", created_at__gte=since, data__grade=Grade.MAJOR.value
        )
        return GaugeMetricFamily(
            "pms_reconciliation_major_drifts",
            "Major drifts recorded by the reconciliation sweep in the last "
            f"{settings.METRICS_DRIFT_WINDOW_SECONDS} s",
            value=drifts.count(),
        )

    def _needing_login(self, now: datetime) -> Metric:
        metric = GaugeMetricFamily(
            "pms_accounts_needing_login",
            "Broker accounts without a live session at the next market open, by role",
            labels=["role"],
        )
        roles: dict[str, int] = {"master": 0, "child": 0}
        for account in accounts_needing_login(now):
            roles[account.role] = roles.get(account.role, 0) + 1
        for role, n in sorted(roles.items()):
            metric.add_metric([role], n)
        return metric

    def _lease(self, now: datetime) -> Iterator[Metric]:
        state, lease = lease_state(now)
        holder = GaugeMetricFamily(
            "pms_engine_lease_holder",
            "The engine lease: 1 for its current holder and epoch while fresh, 0 when stale",
            labels=["holder", "epoch"],
        )
        if lease is not None and state != LEASE_NONE:
            holder.add_metric([lease.holder, str(lease.epoch)], 1 if state == LEASE_FRESH else 0)
        yield holder
        remaining = GaugeMetricFamily(
            "pms_engine_lease_expires_in_seconds", "Seconds until the engine lease expires (negative: stale)"
        )
        if lease is not None and lease.expires_at is not None and state != LEASE_NONE:
            remaining.add_metric([], (lease.expires_at - now).total_seconds())
        yield remaining


def metrics_text() -> bytes:
    """The Prometheus text exposition of the database metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry)


# --- views --------------------------------------------------------------------------------------


def _bearer_ok(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: staff session or the METRICS_TOKEN bearer token; 401 or 403 otherwise."""
    if not _bearer_ok(request):
        user = request.user
        if not user.is_authenticated:
            refused = HttpResponse("authentication required\n", status=401, content_type="text/plain")
            refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return refused
        if not (user.is_active and user.is_staff):
            return HttpResponse("staff only\n", status=403, content_type="text/plain")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and the engine lease is fresh, 503 otherwise (JSON either way)."""
    now = timezone.now()
    body: dict[str, str] = {"database": "ok", "engine_lease": "unknown"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        body["engine_lease"], _ = lease_state(now)
    except DatabaseError as exc:
        logger.warning("healthz: database unreachable: %s", type(exc).__name__)
        body["database"] = "error"
    body["static"] = "collected" if static_collected() else "missing"
    healthy = body["database"] == "ok" and body["engine_lease"] == LEASE_FRESH
    body["status"] = "ok" if healthy else "unhealthy"
    return JsonResponse(body, status=200 if healthy else 503)
