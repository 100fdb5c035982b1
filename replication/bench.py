"""The fan-out benchmark (DESIGN §8), run on a throwaway test database so real data is never touched."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from accounts.models import Account, CapitalMode, Role
from brokers import registry
from brokers.base import BrokerClient
from brokers.memory import MemoryBroker, MemoryExchange
from brokers.paper.client import PaperBroker
from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument
from brokers.paper.services import paper_order_place
from brokers.registry import BrokerCredentials
from replication.models import MappingStatus, MarginSnapshot, OrderMapping
from replication.orchestrator import Orchestrator
from replication.scratch import throwaway_database
from replication.sizing import ChildProfile, Leg, plan_group, size_entries

FUT = "NIFTYBENCHFUT"
EXCHANGE_NOTES = {
    "paper": "children's orders persisted by the paper exchange",
    "memory": "children's orders kept in memory: the engine's own cost",
}


@dataclass
class BenchConfig:
    children: int
    latency_ms: float
    workers: int | None
    sizing_children: int
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    exchange: str = "paper"  # or "memory": children on the in-memory exchange


@dataclass
class BenchResult:
    children: int
    latency_ms: float
    sizing_ms: float
    idle_tick_ms: float
    fanout_s: float
    p99_child_ms: float
    queries_per_tick: int
    placed: int
    event_tick_ms: float
    sizing_children: int
    exchange: str = "paper"
    extra: dict[str, str] = field(default_factory=dict)

    def detail_lines(self) -> list[str]:
        return [
            f"exchange: {self.exchange} ({EXCHANGE_NOTES[self.exchange]})",
            f"sizing: {self.sizing_children} children sized in {self.sizing_ms:.1f} ms of CPU",
            f"idle tick: {self.idle_tick_ms:.1f} ms of engine time beyond the master reads",
            f"event tick: {self.event_tick_ms:.0f} ms in all; {self.placed} child orders placed",
            f"fan-out: last child order acknowledged {self.fanout_s:.3f} s after the master event was read",
            f"queries by the engine in the event tick: {self.queries_per_tick}",
            "event tick phases: " + ", ".join(f"{k}={v}" for k, v in self.extra.items()),
        ]

    def line(self) -> str:
        return (
            f"bench: children={self.children} latency_ms={self.latency_ms:g} sizing_ms={self.sizing_ms:.1f} "
            f"tick_ms={self.idle_tick_ms:.1f} fanout_s={self.fanout_s:.3f} "
            f"p99_child_ms={self.p99_child_ms:.0f} "
            f"queries_per_tick={self.queries_per_tick}"
        )


def measure_sizing(n: int, rng: random.Random) -> float:
    """CPU milliseconds to size n children for one event (best of three)."""
    leg = Leg(
        "NFO",
        FUT,
        "NRML",
        "BUY",
        2,
        75,
        Decimal("20000"),
        order_margin=Decimal("300000"),
        freeze_quantity=1800,
    )
    kids = [
        ChildProfile(i, used=Decimal("0"), available=Decimal(rng.randrange(200_000, 5_000_000)))
        for i in range(n)
    ]
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        plan = plan_group(legs=[leg], master_capital=Decimal("1000000"), delta_u=Decimal("300000"))
        size_entries(plan, kids)
        best = min(best, (time.process_time() - t) * 1000)
    return best


def _seed(config: BenchConfig) -> None:
    PaperInstrument.objects.create(
        exchange="NFO",
        tradingsymbol=FUT,
        instrument_token=1,
        name="NIFTY",
        underlying="NIFTY",
        instrument_type=InstrumentType.FUT,
        segment="NFO-FUT",
        lot_size=75,
        last_price=Decimal("20000"),
        freeze_quantity=1800,
    )
    PaperAccount.objects.create(user_id="BMASTER", cash=Decimal("1000000"))
    Account.objects.create(
        broker="paper",
        broker_user_id="BMASTER",
        role=Role.MASTER,
        display_name="bench master",
        consent_given_at=timezone.now(),
    )
    capitals = [Decimal(config.rng.randrange(500_000, 5_000_000)) for _ in range(config.children)]
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=f"B{i:05d}", cash=c) for i, c in enumerate(capitals)], batch_size=2000
    )
    now = timezone.now()
    accounts = Account.objects.bulk_create(
        [
            Account(
                broker="paper",
                broker_user_id=f"B{i:05d}",
                role=Role.CHILD,
                capital_mode=CapitalMode.TOTAL,
                consent_given_at=now,
                consent_version="bench",
            )
            for i in range(config.children)
        ],
        batch_size=1000,
    )
    MarginSnapshot.objects.bulk_create(
        [
            MarginSnapshot(account=a, used_margin=Decimal(0), available_margin=c, capital=c)
            for a, c in zip(accounts, capitals, strict=True)
        ],
        batch_size=2000,
    )


def _use_memory_exchange(config: BenchConfig) -> Callable[[], None]:
    """Children on the in-memory exchange (same latency), the master stays on the paper exchange."""
    exchange = MemoryExchange(price=Decimal("20000"), cash=Decimal("100000000"))

    def factory(creds: BrokerCredentials) -> BrokerClient:
        if creds.user_id == "BMASTER":
            return PaperBroker(creds.user_id, latency_ms=config.latency_ms)
        return MemoryBroker(creds.user_id, exchange, latency_ms=config.latency_ms)

    previous = registry.register("paper", factory)

    def restore() -> None:
        if previous is not None:
            registry.register("paper", previous)
        else:
            registry.unregister("paper")

    return restore


def run_bench(config: BenchConfig, progress: Callable[[str], None] = lambda _m: None) -> BenchResult:
    sizing_ms = measure_sizing(config.sizing_children, config.rng)
    progress(f"sized {config.sizing_children} children in {sizing_ms:.1f} ms CPU")
    with throwaway_database("bench"):
        progress(f"throwaway database ready; seeding {config.children} children")
        _seed(config)
        restore = _use_memory_exchange(config) if config.exchange == "memory" else None
        with override_settings(PAPER_LATENCY_MS=config.latency_ms, CHILD_SNAPSHOT_MAX_AGE=3600):
            orch = Orchestrator(holder="bench", workers=config.workers)
            try:
                orch.run_tick()  # warm up: lease, master snapshot, instrument cache
                idle = []
                for _ in range(5):
                    r = orch.run_tick()
                    idle.append(r.timings_ms.get("total", 0.0) - r.timings_ms.get("master_read", 0.0))
                idle_ms = statistics.median(idle)
                progress(f"idle tick {idle_ms:.1f} ms beyond the master reads")
                paper_order_place(
                    user_id="BMASTER",
                    exchange="NFO",
                    tradingsymbol=FUT,
                    side="BUY",
                    quantity=150,
                    product="NRML",
                    order_type="MARKET",
                )
                with CaptureQueriesContext(connection) as queries:
                    result = orch.run_tick()
                if result.errors:
                    raise RuntimeError("; ".join(result.errors))
                read_done = result.marks.get("master_read_done", 0.0)
                last = result.dispatch.last_send_done or read_done
                latencies = sorted(
                    ms for ms in OrderMapping.objects.values_list("latency_ms", flat=True) if ms is not None
                )
                p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
                placed = OrderMapping.objects.filter(
                    status__in=(MappingStatus.OPEN, MappingStatus.FILLED)
                ).count()
                return BenchResult(
                    children=config.children,
                    latency_ms=config.latency_ms,
                    sizing_ms=sizing_ms,
                    idle_tick_ms=idle_ms,
                    fanout_s=last - read_done,
                    p99_child_ms=float(p99),
                    queries_per_tick=len(queries),
                    placed=placed,
                    event_tick_ms=float(result.duration_ms),
                    sizing_children=config.sizing_children,
                    exchange=config.exchange,
                    extra={
                        **{k: f"{v:.0f}ms" for k, v in result.timings_ms.items()},
                        **{f"dispatch.{k}": f"{v:.0f}ms" for k, v in result.dispatch.phases_ms.items()},
                    },
                )
            finally:
                orch.close()
                if restore is not None:
                    restore()
