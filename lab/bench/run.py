"""The fan-out benchmark (DESIGN §7, §8), run on a throwaway database so real data is never touched.

Exchanges (`BenchConfig.exchange`):
- `paper`: the children's orders are persisted by the paper exchange (PaperBroker, in process);
- `memory`: the children's orders are kept in memory, to measure the engine's own cost;
- `kite-sim`: master and children on the Kite path: KiteBroker and the real SDK over HTTP to the
  Kite simulator on 127.0.0.1, which sleeps `latency_ms` before answering each request. The
  simulator runs in this process (`sim="thread"`, the default in threads mode) or as a
  `manage.py kite_sim` subprocess (`sim="process"`, the default in queue mode).

Modes (`BenchConfig.mode`):
- `threads`: the orchestrator sends from its own bounded pool (FANOUT_WORKERS);
- `queue`: DESIGN §7 across processes. The tick enqueues one django-q2 task per shard
  (FANOUT_MODE=queue, FANOUT_SHARDS); a `manage.py qcluster` subprocess with K workers sends them.
  Every process shares the throwaway database (PostgreSQL, or a SQLite file in WAL mode) and the
  django-q2 broker (Redis when REDIS_URL is set, else the ORM). The fan-out is measured from the
  master read to the last child order's `acked_at`, read from the database.

A first pass that leaves unknown outcomes (a client timeout) or deferred sends is followed by
engine ticks, once a second as run_orchestrator does, until every child order is settled; the
figures then include that recovery. Every run ends by checking that each child has exactly one
order at the exchange.
"""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext, override_settings

from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_order_place
from lab.bench.config import (
    BENCH_LEASE_TTL,
    EXCHANGES,
    FUT,
    MASTER_USER_ID,
    MODES,
    RECOVERY_TICK_S,
    SIM_LOCATIONS,
    BenchConfig,
    BenchError,
    BenchResult,
    OrderCheck,
)
from lab.bench.cpu import CpuMeter
from lab.bench.desk import (
    measure_sizing,
    raise_open_file_limit,
    seed_accounts,
    sim_in_process,
    use_memory_exchange,
)
from lab.bench.processes import Subprocesses, queue_broker_name, shard_count, subprocesses, wait_for_acks
from lab.kite_sim.server import RunningSim
from lab.memory import MemoryExchange
from lab.scratch import throwaway_database
from replication.models import MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator, TickResult

logger = logging.getLogger(__name__)


def _check_orders(config: BenchConfig, memory: MemoryExchange | None) -> OrderCheck:
    """How many orders each child has at the exchange (the master's are not counted)."""
    if memory is not None:
        per_child = Counter({user: len(orders) for user, orders in memory.orders.items()})
    else:
        per_child = Counter(
            PaperOrder.objects.exclude(account__user_id=MASTER_USER_ID).values_list(
                "account__user_id", flat=True
            )
        )
    children = [f"B{i:05d}" for i in range(config.children)]
    counts = [per_child.get(user, 0) for user in children]
    return OrderCheck(
        children=config.children,
        exactly_one=sum(1 for n in counts if n == 1),
        none=sum(1 for n in counts if n == 0),
        more=sum(1 for n in counts if n > 1),
    )


def _last_ack_wall() -> float:
    """The wall-clock instant (epoch seconds) of the last child order's acknowledgement."""
    last = OrderMapping.objects.aggregate(last=Max("acked_at"))["last"]
    return last.timestamp() if last is not None else 0.0


def _recover(config: BenchConfig, orch: Orchestrator, setup: _Setup) -> tuple[str, str] | None:
    """Child orders the first pass left unsettled (an unknown outcome, a deferred send) are what
    the next ticks are for: tick once a second, as run_orchestrator does, until every child order
    is settled (bounded by `wait_s`). None when there was nothing to recover; else the first
    pass's outcomes and what the recovery took."""
    unsettled = OrderMapping.objects.filter(
        quantity__gt=0,
        status__in=(MappingStatus.PLANNED, MappingStatus.SENDING, MappingStatus.UNKNOWN),
    )
    if not unsettled.exists():
        return None
    first = _outcomes_line()
    started = time.perf_counter()
    deadline = time.monotonic() + config.wait_s
    ticks = 0
    errors: list[str] = []
    while unsettled.exists():
        if time.monotonic() > deadline:
            raise BenchError(
                f"{unsettled.count()} child orders still unsettled after {ticks} recovery ticks in "
                f"{config.wait_s:.0f} s: {_outcomes_line()}; tick errors: {errors[-3:]}"
            )
        if setup.procs is not None:
            setup.procs.check()
        errors += orch.run_tick().errors
        ticks += 1
        time.sleep(RECOVERY_TICK_S)
    grace = settings.UNKNOWN_GRACE_SECONDS
    return first, (
        f"recovery: {ticks} more ticks settled them in {time.perf_counter() - started:.1f} s (unknown "
        f"outcomes looked up by tag, re-sent only when absent after UNKNOWN_GRACE_SECONDS={grace})"
    )


def _outcomes_line() -> str:
    """The child orders by status, and why the ones that were not accepted were not."""
    statuses = Counter(OrderMapping.objects.filter(quantity__gt=0).values_list("status", flat=True))
    problems = Counter(
        OrderMapping.objects.filter(quantity__gt=0)
        .exclude(status__in=(MappingStatus.OPEN, MappingStatus.FILLED))
        .values_list("reason_code", flat=True)
    )
    line = "outcomes: " + " ".join(f"{status}={n}" for status, n in sorted(statuses.items()))
    if problems:
        line += " (reasons: " + ", ".join(f"{code or '?'}={n}" for code, n in sorted(problems.items())) + ")"
    return line


def _end_stray_sessions() -> None:
    """Before the throwaway database is dropped: the fan-out pool's threads are gone but their
    connections can linger until collected, and PostgreSQL refuses to drop a database that has
    sessions. Collect them, then end whatever sessions of this (throwaway) database remain."""
    gc.collect()
    if connection.vendor != "postgresql":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
    except DatabaseError as exc:  # not allowed to: the drop reports the sessions itself
        logger.warning("could not end the other sessions of the bench database: %s", exc)


def _database_label() -> str:
    return "postgresql" if connection.vendor == "postgresql" else f"{connection.vendor} (file, WAL)"


@dataclass
class _Setup:
    """What a run was given besides the orchestrator: where the orders go and who sends them."""

    broker: str = ""  # queue mode: the django-q2 broker
    memory: MemoryExchange | None = None  # exchange "memory"
    running: RunningSim | None = None  # exchange "kite-sim" with the simulator in this process
    procs: Subprocesses | None = None  # queue mode, or the simulator as a subprocess
    sim: str = ""  # where the simulator runs ("thread" or "process"), for the report


def sim_location(config: BenchConfig) -> str:
    """`config.sim` or, when it is empty, in this process for threads mode and a subprocess for
    queue mode (where the bench process also polls the database)."""
    if config.exchange != "kite-sim":
        return ""
    return config.sim or ("process" if config.mode == "queue" else "thread")


def run_bench(config: BenchConfig, progress: Callable[[str], None] = lambda _m: None) -> BenchResult:
    if config.exchange not in EXCHANGES:
        raise BenchError(f"unknown exchange {config.exchange!r}")
    if config.mode not in MODES:
        raise BenchError(f"unknown mode {config.mode!r}")
    if config.sim not in ("", *SIM_LOCATIONS):
        raise BenchError(f"unknown simulator location {config.sim!r}")
    queue_mode = config.mode == "queue"
    if queue_mode and config.exchange == "memory":
        raise BenchError("queue mode sends from other processes: use --exchange paper or kite-sim")
    setup = _Setup(broker=queue_broker_name() if queue_mode else "", sim=sim_location(config))
    if config.exchange == "kite-sim":
        raise_open_file_limit(config.children)
    sizing_ms = measure_sizing(config.sizing_children, config.rng)
    progress(f"sized {config.sizing_children} children in {sizing_ms:.1f} ms CPU")
    with throwaway_database("bench"):
        progress(f"throwaway database ready; seeding {config.children} children")
        sessions = seed_accounts(config)
        with ExitStack() as stack:
            stack.callback(_end_stray_sessions)  # runs last, after the pool and subprocesses stop
            overrides: dict[str, Any] = {
                # Measured as the engine runs in production. DEBUG (a development .env turns it
                # on) gives every thread's connection a debug cursor that formats and keeps each
                # query: a fifth of the send phase at 1,000 children. The bench's own query count
                # uses CaptureQueriesContext, which works either way.
                "DEBUG": False,
                "PAPER_LATENCY_MS": config.latency_ms if config.exchange == "paper" else 0.0,
                "CHILD_SNAPSHOT_MAX_AGE": 3600,
            }
            if config.exchange == "memory":
                setup.memory, restore = use_memory_exchange(config)
                stack.callback(restore)
            if queue_mode or setup.sim == "process":
                setup.procs = stack.enter_context(subprocesses(config))
            root: str | None = None
            if setup.sim == "process" and setup.procs is not None:
                root = setup.procs.start_sim(sessions)
                progress(f"simulator subprocess serving {root} with {len(sessions)} sessions")
            elif setup.sim == "thread":
                setup.running = stack.enter_context(sim_in_process(config, sessions))
                root = setup.running.root
                progress(f"simulator serving {root} in this process with {len(sessions)} sessions")
            if root is not None:
                overrides["KITE_API_ROOT"] = root
            if queue_mode and setup.procs is not None:
                setup.procs.start_cluster(progress, kite_root=root)
                overrides.update(FANOUT_MODE="queue", FANOUT_SHARDS=shard_count(config))
            stack.enter_context(override_settings(**overrides))
            orch = Orchestrator(holder="bench", workers=config.workers, lease_ttl=BENCH_LEASE_TTL)
            stack.callback(orch.close)
            return _measure(config, orch, sizing_ms, setup, progress)
    raise AssertionError("unreachable")  # pragma: no cover  (the with block returns or raises)


def _measure(
    config: BenchConfig,
    orch: Orchestrator,
    sizing_ms: float,
    setup: _Setup,
    progress: Callable[[str], None],
) -> BenchResult:
    orch.run_tick()  # warm up: lease, master snapshot, instrument cache
    idle = []
    for _ in range(5):
        r = orch.run_tick()
        idle.append(r.timings_ms.get("total", 0.0) - r.timings_ms.get("master_read", 0.0))
    idle_ms = statistics.median(idle)
    progress(f"idle tick {idle_ms:.1f} ms beyond the master reads")
    paper_order_place(
        user_id=MASTER_USER_ID,
        exchange="NFO",
        tradingsymbol=FUT,
        side="BUY",
        quantity=150,
        product="NRML",
        order_type="MARKET",
    )
    cpu = CpuMeter(setup.procs)
    cpu.start()
    wall0, perf0 = time.time(), time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        result = orch.run_tick()
    if result.errors:
        raise BenchError("; ".join(result.errors))
    read_done = result.marks.get("master_read_done", 0.0)
    read_wall = wall0 + (read_done - perf0)
    notes: list[str] = []
    if config.mode == "queue" and setup.procs is not None:
        seen = wait_for_acks(config, setup.procs)
        fanout_s = _last_ack_wall() - read_wall
        notes.append(
            f"queue: {result.queued_shards} shard tasks enqueued; every outcome was in the database "
            f"{seen - read_done:.3f} s after the master read (written back per shard)"
        )
        pool = config.workers if config.workers is not None else settings.FANOUT_WORKERS
        workers = f"{config.queue_workers}x{pool} shards={shard_count(config)}"
    else:
        last = result.dispatch.last_send_done or read_done
        fanout_s = last - read_done
        workers = str(config.workers if config.workers is not None else settings.FANOUT_WORKERS)
    cpu_line = cpu.report()
    recovery = _recover(config, orch, setup)
    if recovery:
        first_pass = fanout_s
        fanout_s = _last_ack_wall() - read_wall
        notes.append(
            f"first pass: {recovery[0]}; last acknowledgement {first_pass:.3f} s after the master read"
        )
        notes.append(recovery[1])
    if setup.running is not None:
        placed_http = setup.running.sim.hit_count(route="POST /orders/{variety}", status=200)
        notes.append(f"simulator: {placed_http} order writes answered 200 over HTTP")
    notes.append(cpu_line)
    notes.append(_outcomes_line())
    latencies = sorted(
        ms for ms in OrderMapping.objects.values_list("latency_ms", flat=True) if ms is not None
    )
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    placed = OrderMapping.objects.filter(status__in=(MappingStatus.OPEN, MappingStatus.FILLED)).count()
    return BenchResult(
        children=config.children,
        latency_ms=config.latency_ms,
        sizing_ms=sizing_ms,
        idle_tick_ms=idle_ms,
        fanout_s=fanout_s,
        p99_child_ms=float(p99),
        queries_per_tick=len(queries),
        placed=placed,
        event_tick_ms=float(result.duration_ms),
        sizing_children=config.sizing_children,
        exchange=config.exchange,
        extra=_phases(result),
        mode=config.mode,
        workers=workers,
        broker=setup.broker,
        database=_database_label(),
        sim=setup.sim,
        orders=_check_orders(config, setup.memory),
        notes=notes,
    )


def _phases(result: TickResult) -> dict[str, str]:
    return {
        **{k: f"{v:.0f}ms" for k, v in result.timings_ms.items()},
        **{f"dispatch.{k}": f"{v:.0f}ms" for k, v in result.dispatch.phases_ms.items()},
    }
