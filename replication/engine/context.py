"""What a tick needs, in one typed object: no stage reaches for it through another object."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from brokers.types import Order
from replication.clients import ClientCache
from replication.engine.result import TickResult
from replication.fanout import FanOut
from replication.instruments import InstrumentCache
from replication.lease import Lease
from replication.models import EngineControl, TickRun
from replication.pending import RetryGate
from replication.ratelimit import LimiterRegistry
from replication.replicator import Replicator


@dataclass(slots=True)
class EngineState:
    """What the engine remembers between ticks besides its clients and caches."""

    queued_at: dict[int, float] = field(default_factory=dict)  # shard -> when it was last queued
    market_retry: RetryGate = field(default_factory=RetryGate)  # filled mirrors made MARKET
    # Copies of resting master exits cut to the position: a refused cut is tried again soon (an
    # oversized copy would take the child past zero if the stop triggered meanwhile).
    trim_retry: RetryGate = field(default_factory=lambda: RetryGate(every=2.0))
    last_sweep: float | None = None  # the convergence stage's last full sweep (monotonic)
    stale_retries: dict[int, tuple[int, datetime]] = field(default_factory=dict)  # mirror id -> tries, next


@dataclass(slots=True)
class TickContext:
    """One tick's lease, broker clients, limiters, send gate (with its pool), instruments, switches."""

    lease: Lease
    tick: TickRun
    control: EngineControl
    mode: str  # REPLICATION_MODE: "order" (whole orders) or "fill" (fills)
    clients: ClientCache
    limiters: LimiterRegistry
    instruments: InstrumentCache
    sender: Replicator  # the one send gate: claims, sends, follows up, writes outcomes back
    state: EngineState
    result: TickResult
    freeze_gc: bool = False  # the process is the engine's own: idle ticks may freeze the collector
    hints: tuple[Order, ...] = ()  # the streamed order updates that woke this tick (`replication.wakeup`)
    # timezone.now looked up at each call (as the engine always did): a patched clock counts.
    now: Callable[[], datetime] = field(default=lambda: timezone.now())

    @property
    def pool(self) -> FanOut:
        """The bounded worker pool broker calls run in."""
        return self.sender.fanout

    def error(self, message: str) -> None:
        self.result.errors.append(message)
