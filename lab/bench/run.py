"""The fan-out benchmark (DESIGN §7, §8), run on a throwaway database so real data is never touched.

Exchanges (`BenchConfig.exchange`):
- `paper`: the children's orders are persisted by the paper exchange (PaperBroker, in process);
- `memory`: the children's orders are kept in memory, to measure the engine's own cost;
- `kite-sim`: master and children on the Kite path: KiteBroker and the real SDK over HTTP to the
  Kite simulator on 127.0.0.1, which waits `latency_ms` before answering each request. By default
  (`sim="memory"`) the simulator is a `manage.py kite_sim --memory-orders` subprocess, an event
  loop answering the children's orders from memory (the master's are persisted): the rig costs
  less than the engine per request, so the figures are the engine's. The master's order then goes
  in through the SDK while the orchestrator loop polls (`detect="poll"`) or listens to the order
  stream (`detect="stream"`), and the run also times a sequential loop of SDK calls. The older
  rigs persist every order in the paper exchange: in this process (`sim="thread"`) or as a
  subprocess (`sim="process"`).

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
import os
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
    SimSession,
    measure_sizing,
    raise_open_file_limit,
    seed_accounts,
    sim_in_process,
    use_memory_exchange,
)
from lab.bench.kite import EventTick, LoopResult, event_via_sdk, loop_sessions, sequential_loop, sim_delta
from lab.bench.processes import Subprocesses, queue_broker_name, shard_count, subprocesses, wait_for_acks
from lab.kite_sim.fast import stats
from lab.kite_sim.server import RunningSim
from lab.memory import MemoryExchange
from lab.scratch import throwaway_database
from replication.models import MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator, TickResult

logger = logging.getLogger(__name__)


def _check_orders(config: BenchConfig, memory: MemoryExchange | None, sim_root: str = "") -> OrderCheck:
    """How many orders each child has at the exchange (the master's are not counted); with the
    simulator's memory mode, as the simulator counts them."""
    if sim_root:
        per_child = Counter({str(u): int(n) for u, n in stats(sim_root)["orders"].items()})
    elif memory is not None:
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
    sim: str = ""  # where the simulator runs ("memory", "thread" or "process"), for the report
    root: str = ""  # the simulator's HTTP root
    ws_root: str = ""  # its order-update WebSocket
    master: SimSession | None = None
    loop: list[SimSession] | None = None  # the sequential loop's sessions (memory mode)


def sim_location(config: BenchConfig) -> str:
    """`config.sim`, or the memory mode when it is empty."""
    if config.exchange != "kite-sim":
        return ""
    return config.sim or "memory"


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
            if queue_mode or setup.sim in ("process", "memory"):
                setup.procs = stack.enter_context(subprocesses(config))
            root: str | None = None
            if setup.sim in ("process", "memory") and setup.procs is not None:
                memory = setup.sim == "memory"
                setup.loop = loop_sessions(config.loop_calls) if memory else []
                setup.master = next(s for s in sessions if s.user_id == MASTER_USER_ID)
                root, setup.ws_root = setup.procs.start_sim(
                    sessions + setup.loop, memory_persist=MASTER_USER_ID if memory else None
                )
                progress(
                    f"simulator subprocess serving {root} ({'orders from memory' if memory else 'paper'}) "
                    f"with {len(sessions)} sessions"
                )
            elif setup.sim == "thread":
                setup.running = stack.enter_context(sim_in_process(config, sessions))
                root = setup.running.root
                progress(f"simulator serving {root} in this process with {len(sessions)} sessions")
            if root is not None:
                overrides["KITE_API_ROOT"] = root
                setup.root = root
            if queue_mode and setup.procs is not None:
                setup.procs.start_cluster(progress, kite_root=root)
                overrides.update(FANOUT_MODE="queue", FANOUT_SHARDS=shard_count(config))
            stack.enter_context(override_settings(**overrides))
            orch = Orchestrator(
                holder="bench", workers=config.workers, lease_ttl=BENCH_LEASE_TTL, freeze_gc=True
            )
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
    cpu = CpuMeter(setup.procs)
    event: EventTick | None = None
    if setup.sim == "memory" and setup.master is not None:
        before = stats(setup.root)
        cpu.start()
        event = event_via_sdk(
            config, orch, setup.master, root=setup.root, ws_root=setup.ws_root, progress=progress
        )
        result, query_count = event.result, event.queries
        wall0, perf0 = event.tick_wall, event.tick_perf
    else:
        paper_order_place(
            user_id=MASTER_USER_ID,
            exchange="NFO",
            tradingsymbol=FUT,
            side="BUY",
            quantity=150,
            product="NRML",
            order_type="MARKET",
        )
        cpu.start()
        wall0, perf0 = time.time(), time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            result = orch.run_tick()
        query_count = len(queries)
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
    if event is not None:  # after the last acknowledgement (in queue mode the workers send later)
        after = stats(setup.root)
        sim_figures = sim_delta(before, after)
        first = after.get("first_order_at")
        event.first_child_wall = float(first) if first is not None else None
    workers_cpu_s = cpu.group_delta("qcluster")  # queue mode: the workers send the orders
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
    if event is not None:
        orders_check = _check_orders(config, setup.memory, setup.root)  # before the loop adds orders
        notes += _kite_lines(
            config, event, sim_figures, fanout_s, sequential_loop(setup.root, setup.loop or []), workers_cpu_s
        )
    else:
        orders_check = _check_orders(config, setup.memory)
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
        queries_per_tick=query_count,
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
        master="first-look" if config.first_look else "seen-today",
        orders=orders_check,
        notes=notes,
    )


def _kite_lines(
    config: BenchConfig,
    event: EventTick,
    sim: Any,
    fanout_s: float,
    loop: LoopResult,
    workers_cpu_s: float = 0.0,
) -> list[str]:
    """The Kite path's figures: engine and simulator CPU per order, detection, the sequential
    loop, the speed-up and the run's limit. In queue mode the engine's CPU is the orchestrator's
    event tick plus the qcluster workers' (measured to the last acknowledgement)."""
    n = config.children
    queue = config.mode == "queue"
    sent = n if queue else max(1, event.result.dispatch.sent)
    engine_cpu_s = event.cpu_s + workers_cpu_s
    engine_ms = engine_cpu_s * 1000 / sent
    cores = 1  # threads mode: one process, one interpreter lock
    if queue:
        cores = min(os.cpu_count() or 1, config.queue_workers)
    limit_s = loop.median_call_s + engine_cpu_s / cores
    extrapolated = loop.extrapolated_s(n)
    detection = event.detection_ms
    return [
        f"cpu per child order: engine {engine_ms:.2f} ms ("
        + (f"the qcluster workers {workers_cpu_s:.2f} s + " if queue else "")
        + f"this process during the event tick {event.cpu_s:.2f} s, for {sent} orders; SDK and HTTP "
        f"included), simulator "
        f"{sim.cpu_ms_per_request:.2f} ms per request ({sim.cpu_s:.2f} s for {sim.requests} requests)",
        (
            f"engine cpu by phase: the orchestrator's event tick {event.cpu_s * 1000 / sent:.2f} ms per "
            f"order, the workers' sends {workers_cpu_s * 1000 / sent:.2f} ms per order"
            if queue
            else f"engine cpu by phase: send phase {event.send_cpu_s * 1000 / sent:.2f} ms per order (the "
            f"workers: SDK, HTTP, limiter, outcome), the rest of the tick "
            f"{(event.cpu_s - event.send_cpu_s) * 1000 / sent:.2f} ms per order (reads, diff, sizing, "
            f"intents, claim, clients, write-back)"
        ),
        (
            f"detection ({event.detect}): master order placed -> first child order at the simulator "
            f"{detection:.0f} ms (the event tick started {event.tick_lag_ms:.0f} ms after the placement, "
            f"poll interval {settings.POLL_INTERVAL:g} s; the rest is the tick's work before its first "
            f"send: reads, diff, sizing, intents, claim, clients)"
            if detection is not None
            else f"detection ({event.detect}): no child order reached the simulator"
        ),
        f"sequential loop: {loop.calls} SDK place_order calls in a row took {loop.wall_s:.2f} s "
        f"({loop.median_call_s * 1000:.1f} ms median per call, "
        f"{loop.cpu_s * 1000 / max(1, loop.calls):.2f} ms CPU per call); "
        f"extrapolated to {n} children: {extrapolated:.1f} s (EXTRAPOLATED, not run)",
        f"speed-up: {extrapolated / fanout_s if fanout_s > 0 else 0:.0f}x (the extrapolated sequential "
        f"loop / this fan-out's {fanout_s:.3f} s)",
        f"limit for this run: {limit_s:.3f} s = one round trip {loop.median_call_s * 1000:.0f} ms + "
        f"{engine_ms:.2f} ms CPU x {n} orders / {cores} core(s) used "
        f"(this fan-out took {fanout_s / limit_s if limit_s > 0 else 0:.2f}x the limit)",
    ]


def _phases(result: TickResult) -> dict[str, str]:
    return {
        **{k: f"{v:.0f}ms" for k, v in result.timings_ms.items()},
        **{f"dispatch.{k}": f"{v:.0f}ms" for k, v in result.dispatch.phases_ms.items()},
    }
