"""The fan-out benchmark's configuration, constants and result."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings

FUT = "NIFTYBENCHFUT"
MASTER_USER_ID = "BMASTER"
EXCHANGES = ("paper", "memory", "kite-sim")
MODES = ("threads", "queue")
SIM_LOCATIONS = ("memory", "thread", "process")
DETECTIONS = ("poll", "stream")
LOOP_USERS = 100  # the sequential loop's accounts: one order each (Kite's 10 orders/s per account)
EXCHANGE_NOTES = {
    "paper": "children's orders persisted by the paper exchange",
    "memory": "children's orders kept in memory: the engine's own cost",
    "kite-sim": "master and children on the Kite path: the real SDK over HTTP to the simulator on "
    "127.0.0.1, which adds the latency to every request (simulator memory: children's orders "
    "answered from memory on an event loop, the master's persisted in the paper exchange; "
    "thread/process: every order persisted in the paper exchange)",
}
KITE_ORDER_RATE = 10  # the simulator's order writes per second per account (Kite's limit)
BASE_DIR = Path(settings.BASE_DIR)
# The bench measures time, not leadership: a lease that outlives a slow fan-out (a send phase
# longer than LEASE_TTL_SECONDS would lose the lease before the write-back) and the waits below.
BENCH_LEASE_TTL = timedelta(seconds=300)
STOP_GRACE_S = 15.0
POLL_S = 0.02
RECOVERY_TICK_S = 1.0  # run_orchestrator's default POLL_INTERVAL


class BenchError(RuntimeError):
    """The benchmark could not run or its result is wrong (a process died, orders went missing)."""


@dataclass
class BenchConfig:
    children: int
    latency_ms: float
    workers: int | None
    sizing_children: int
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    exchange: str = "paper"  # or "memory", "kite-sim" (see the module docstring)
    mode: str = "threads"  # or "queue"
    queue_workers: int = 2  # queue mode: qcluster workers (Q_WORKERS)
    queue_shards: int | None = None  # queue mode: FANOUT_SHARDS; None = as many as workers
    wait_s: float = 300.0  # bound on each wait: subprocess start, the last acknowledgement, recovery
    sim: str = ""  # kite-sim: "memory" (the default), "thread" (this process) or "process"
    detect: str = "poll"  # kite-sim with sim "memory": how the event tick learns of the master order
    loop_calls: int = LOOP_USERS  # kite-sim with sim "memory": the sequential SDK loop's sample
    # The master's event is the day's first the engine sees (no stored position for today: its
    # positions are read after its book, one round trip more); otherwise a later one of the day.
    first_look: bool = False


@dataclass(frozen=True)
class OrderCheck:
    """Orders at the exchange per child after the event: each child must have exactly one."""

    children: int
    exactly_one: int
    none: int
    more: int

    @property
    def ok(self) -> bool:
        return self.exactly_one == self.children and self.none == 0 and self.more == 0

    def line(self) -> str:
        return (
            f"orders: {self.children} children, {self.exactly_one} with exactly one order at the "
            f"exchange, {self.none} with none, {self.more} with more than one"
        )


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
    mode: str = "threads"
    workers: str = ""  # threads: the pool size; queue: qcluster workers x pool size
    broker: str = ""  # queue mode: the django-q2 broker (redis or orm)
    database: str = ""
    sim: str = ""  # kite-sim: where the simulator ran
    # "seen-today": the master has a stored position for today; "first-look": the day's first event
    master: str = ""
    orders: OrderCheck | None = None
    notes: list[str] = field(default_factory=list)

    def detail_lines(self) -> list[str]:
        lines = [
            f"exchange: {self.exchange} ({EXCHANGE_NOTES[self.exchange]})",
            f"run: mode={self.mode} workers={self.workers} database={self.database} debug=off"
            + (f" broker={self.broker}" if self.broker else "")
            + (f" simulator={self.sim}" if self.sim else "")
            + (f" master={self.master}" if self.master else ""),
            f"sizing: {self.sizing_children} children sized in {self.sizing_ms:.1f} ms of CPU",
            f"idle tick: {self.idle_tick_ms:.1f} ms of engine time beyond the master reads",
            f"event tick: {self.event_tick_ms:.0f} ms in all; {self.placed} child orders placed",
            f"fan-out: last child order acknowledged {self.fanout_s:.3f} s after the master event was read",
            f"queries by the engine in the event tick: {self.queries_per_tick}",
            "event tick phases: " + ", ".join(f"{k}={v}" for k, v in self.extra.items()),
            *self.notes,
        ]
        if self.orders is not None:
            lines.append(self.orders.line())
        return lines

    def line(self) -> str:
        return (
            f"bench: children={self.children} latency_ms={self.latency_ms:g} sizing_ms={self.sizing_ms:.1f} "
            f"tick_ms={self.idle_tick_ms:.1f} fanout_s={self.fanout_s:.3f} "
            f"p99_child_ms={self.p99_child_ms:.0f} "
            f"queries_per_tick={self.queries_per_tick}"
        )
