"""The orchestrator: what lives across ticks (identity, broker clients, rate limiters, instruments,
the send gate's pool) and the tick's bookkeeping (lease, tick row). The tick itself is
`replication.engine.tick.run_tick`, a script of stages."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings

from replication.clients import ClientCache
from replication.controls import engine_control_get
from replication.engine import tick as engine_tick
from replication.engine.calculator import read_together
from replication.engine.context import EngineState, TickContext
from replication.engine.result import TickResult
from replication.instruments import InstrumentCache
from replication.lease import Lease, LeaseLost, default_holder, lease_acquire, lease_release
from replication.models import TickRun
from replication.ratelimit import LimiterRegistry
from replication.replicator import Replicator
from replication.services.ticks import tick_finish, tick_start
from replication.wakeup import take_hints

__all__ = ["Orchestrator", "TickResult", "read_together", "run_tick"]

logger = logging.getLogger(__name__)


class Orchestrator:
    """Holds what lives across ticks: identity, broker clients, rate limiters, instrument cache."""

    def __init__(
        self,
        *,
        holder: str | None = None,
        workers: int | None = None,
        lease_ttl: timedelta | None = None,
        freeze_gc: bool = False,
    ):
        """`freeze_gc`: the process is the engine's own (`run_orchestrator`, the bench), so an idle
        tick that built broker clients may run a full collection and freeze what survives. A host
        process (tests, a shell, a queue worker) keeps its collector to itself."""
        self.holder = holder or default_holder()
        self.freeze_gc = freeze_gc
        self.clients = ClientCache()
        self.limiters = LimiterRegistry()
        self.instruments = InstrumentCache()
        self.workers = workers
        self.lease_ttl = lease_ttl or timedelta(seconds=settings.LEASE_TTL_SECONDS)
        self.state = EngineState()
        self._replicator: Replicator | None = None

    def close(self) -> None:
        """Stop the worker pool and hand the lease back, so a restart takes over at once."""
        if self._replicator is not None:
            self._replicator.close()
            lease_release(lease=self._replicator.lease)

    def replicator(self, lease: Lease) -> Replicator:
        """The send gate for this leader (made once: its pool lives across ticks)."""
        if self._replicator is None:
            self._replicator = Replicator(
                lease=lease, clients=self.clients, limiters=self.limiters, workers=self.workers
            )
        self._replicator.lease = lease
        return self._replicator

    def run_tick(self) -> TickResult:
        started = time.perf_counter()
        current = self._replicator.lease if self._replicator is not None else None
        lease = lease_acquire(holder=self.holder, ttl=self.lease_ttl, current=current)
        if lease is None:
            return TickResult(leader=False)
        tick = tick_start(lease=lease)
        result = TickResult(leader=True, tick_id=tick.pk, epoch=lease.epoch)
        sender = self.replicator(lease)
        try:
            engine_tick.run_tick(self._context(lease, tick, sender, result))
            outcome = TickRun.Outcome.ERROR if result.errors else TickRun.Outcome.OK
        except LeaseLost as exc:
            result.errors.append(f"lease lost: {exc}")
            outcome = TickRun.Outcome.NOT_LEADER
        except Exception as exc:
            logger.exception("tick %s failed", tick.pk)
            result.errors.append(f"{type(exc).__name__}: {exc}")
            outcome = TickRun.Outcome.ERROR
        result.duration_ms = int((time.perf_counter() - started) * 1000)
        tick_finish(
            tick=tick,
            outcome=outcome,
            duration_ms=result.duration_ms,
            counts=result.counts(),
            errors=result.errors,
        )
        return result

    def _context(self, lease: Lease, tick: TickRun, sender: Replicator, result: TickResult) -> TickContext:
        return TickContext(
            lease=lease,
            tick=tick,
            control=engine_control_get(),
            mode=settings.REPLICATION_MODE,
            clients=self.clients,
            limiters=self.limiters,
            instruments=self.instruments,
            sender=sender,
            state=self.state,
            result=result,
            freeze_gc=self.freeze_gc,
            hints=take_hints(),
        )


def run_tick(orchestrator: Orchestrator | None = None) -> TickResult:
    """One orchestrator tick. Tests call this; `run_orchestrator` loops it."""
    own = orchestrator is None
    orch = orchestrator or Orchestrator()
    try:
        return orch.run_tick()
    finally:
        if own:
            orch.close()
