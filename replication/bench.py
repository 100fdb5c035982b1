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
import json
import logging
import os
import random
import resource
import secrets
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from accounts.models import Account, Broker, CapitalMode, Role
from brokers import registry
from brokers.base import BrokerClient
from brokers.kite.instruments import shared_cache
from brokers.kite_sim.faults import OrderRateLimiter
from brokers.kite_sim.server import KiteSim, RunningSim, start
from brokers.memory import MemoryBroker, MemoryExchange
from brokers.paper.client import PaperBroker
from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument, PaperOrder
from brokers.paper.services import paper_order_place
from brokers.registry import BrokerCredentials
from replication.models import MappingStatus, MarginSnapshot, OrderMapping
from replication.orchestrator import Orchestrator, TickResult
from replication.scratch import throwaway_database
from replication.sizing import ChildProfile, Leg, plan_group, size_entries

logger = logging.getLogger(__name__)

FUT = "NIFTYBENCHFUT"
MASTER_USER_ID = "BMASTER"
EXCHANGES = ("paper", "memory", "kite-sim")
MODES = ("threads", "queue")
SIM_LOCATIONS = ("thread", "process")
EXCHANGE_NOTES = {
    "paper": "children's orders persisted by the paper exchange",
    "memory": "children's orders kept in memory: the engine's own cost",
    "kite-sim": "master and children on the Kite path: the real SDK over HTTP to the simulator on "
    "127.0.0.1, which adds the latency to every request and persists orders in the paper exchange",
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
    sim: str = ""  # kite-sim: "thread" (this process) or "process" (a subprocess); "" = by mode


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
    orders: OrderCheck | None = None
    notes: list[str] = field(default_factory=list)

    def detail_lines(self) -> list[str]:
        lines = [
            f"exchange: {self.exchange} ({EXCHANGE_NOTES[self.exchange]})",
            f"run: mode={self.mode} workers={self.workers} database={self.database} debug=off"
            + (f" broker={self.broker}" if self.broker else "")
            + (f" simulator={self.sim}" if self.sim else ""),
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


@dataclass(frozen=True)
class SimSession:
    """A Kite session the simulator will accept for one paper account (never printed)."""

    user_id: str
    api_key: str
    access_token: str

    def __repr__(self) -> str:
        return f"SimSession(user_id={self.user_id!r})"


def _seed(config: BenchConfig) -> list[SimSession]:
    """The instrument, the master and N children with margin snapshots; on the Kite path the
    accounts are Kite accounts with generated credentials (returned, for the simulator)."""
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
    kite = config.exchange == "kite-sim"
    sessions: list[SimSession] = []

    def credentials(user_id: str) -> dict[str, str]:
        if not kite:
            return {}
        session = SimSession(user_id, secrets.token_hex(8), secrets.token_hex(16))
        sessions.append(session)
        return {"api_key": session.api_key, "access_token": session.access_token}

    broker = Broker.KITE if kite else Broker.PAPER
    PaperAccount.objects.create(user_id=MASTER_USER_ID, cash=Decimal("1000000"))
    Account.objects.create(
        broker=broker,
        broker_user_id=MASTER_USER_ID,
        role=Role.MASTER,
        display_name="bench master",
        consent_given_at=timezone.now(),
        **credentials(MASTER_USER_ID),
    )
    capitals = [Decimal(config.rng.randrange(500_000, 5_000_000)) for _ in range(config.children)]
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=f"B{i:05d}", cash=c) for i, c in enumerate(capitals)], batch_size=2000
    )
    now = timezone.now()
    accounts = Account.objects.bulk_create(
        [
            Account(
                broker=broker,
                broker_user_id=f"B{i:05d}",
                role=Role.CHILD,
                capital_mode=CapitalMode.TOTAL,
                consent_given_at=now,
                consent_version="bench",
                **credentials(f"B{i:05d}"),
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
    return sessions


def _use_memory_exchange(config: BenchConfig) -> tuple[MemoryExchange, Callable[[], None]]:
    """Children on the in-memory exchange (same latency), the master stays on the paper exchange."""
    exchange = MemoryExchange(price=Decimal("20000"), cash=Decimal("100000000"))

    def factory(creds: BrokerCredentials) -> BrokerClient:
        if creds.user_id == MASTER_USER_ID:
            return PaperBroker(creds.user_id, latency_ms=config.latency_ms)
        return MemoryBroker(creds.user_id, exchange, latency_ms=config.latency_ms)

    previous = registry.register("paper", factory)

    def restore() -> None:
        if previous is not None:
            registry.register("paper", previous)
        else:
            registry.unregister("paper")

    return exchange, restore


def _raise_open_file_limit(children: int) -> None:
    """Each Kite child keeps one HTTP connection open (two sockets when the simulator runs in this
    process): raise the soft limit on open files towards the hard one if it is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * children + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# --- the simulator in this process (threads mode) ------------------------------------------------


@contextmanager
def _sim_in_process(config: BenchConfig, sessions: list[SimSession]) -> Iterator[RunningSim]:
    """A simulator on 127.0.0.1 (ephemeral port) in this process, with every session registered."""
    sim = KiteSim(limiter=OrderRateLimiter(per_second=KITE_ORDER_RATE))
    for s in sessions:
        sim.store.create(user_id=s.user_id, api_key=s.api_key, access_token=s.access_token)
    sim.set_faults(latency_ms=config.latency_ms)
    running = start(sim=sim, host="127.0.0.1", port=0)
    shared_cache(running.root).clear()  # a reused port must not serve another run's instruments
    try:
        yield running
    finally:
        running.stop()
        shared_cache(running.root).clear()


# --- queue mode: subprocesses ----------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database this process uses now (the throwaway one), for subprocesses."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(s["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise BenchError("queue mode needs a file or server database shared between processes")
        return f"sqlite:///{os.path.abspath(name)}"
    if connection.vendor == "postgresql":
        user = quote(str(s.get("USER") or ""), safe="")
        password = quote(str(s.get("PASSWORD") or ""), safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = str(s.get("HOST") or "")
        host = f"[{host}]" if ":" in host else host
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{auth}{quote(host, safe='[]:')}{port}/{quote(str(s['NAME']), safe='')}"
    raise BenchError(f"queue mode supports SQLite and PostgreSQL, not {connection.vendor}")


def shard_count(config: BenchConfig) -> int:
    return config.queue_shards or config.queue_workers


def queue_broker_name() -> str:
    q_cluster: dict[str, Any] = getattr(settings, "Q_CLUSTER", {})
    if q_cluster.get("sync"):
        raise BenchError(
            "queue mode needs a real django-q2 cluster, but Q_CLUSTER['sync'] is on (Q_SYNC or test "
            "settings): run it with DJANGO_SETTINGS_MODULE=pms.settings"
        )
    return "redis" if q_cluster.get("redis") else "orm"


class _Process:
    """A `manage.py` subprocess in a process group of its own, with its output in a log file."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], logdir: Path, stdout_pipe: bool):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.popen = subprocess.Popen(  # noqa: S603  (our own interpreter and manage.py, fixed arguments)
            [sys.executable, str(BASE_DIR / "manage.py"), *args],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def read_line(self, *, timeout: float) -> str:
        """The next line of its stdout, waiting at most `timeout` seconds."""
        stream = self.popen.stdout
        if stream is None:
            raise BenchError(f"{self.name}: no stdout pipe")
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name} printed nothing in {timeout:.0f} s:\n{self.log_tail()}")
            ready, _, _ = select.select([stream], [], [], min(left, 0.5))
            if ready:
                return stream.readline().decode().strip()

    def stop(self) -> None:
        """SIGTERM to the process (qcluster stops its own workers; SIGTERM to the whole group at
        once can leave its main process waiting forever), then SIGKILL to whatever is left of its
        process group after a grace period."""
        try:
            if self.alive():
                self.popen.send_signal(signal.SIGTERM)
                with suppress(subprocess.TimeoutExpired):  # killed below
                    self.popen.wait(timeout=STOP_GRACE_S)
            with suppress(ProcessLookupError):  # the whole group is gone already
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        finally:
            if self.popen.stdout is not None:
                self.popen.stdout.close()
            self._log.close()


def _subprocess_env(config: BenchConfig, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PMS_FAILPOINTS"}
    env.update(
        DATABASE_URL=db_url,
        Q_WORKERS=str(config.queue_workers),
        Q_SYNC="false",
        PAPER_LATENCY_MS=str(config.latency_ms if config.exchange == "paper" else 0),
        LOG_LEVEL=env.get("BENCH_LOG_LEVEL", "WARNING"),
        PYTHONUNBUFFERED="1",
        DEBUG="false",  # as in production (see run_bench)
    )
    if config.workers is not None:
        env["FANOUT_WORKERS"] = str(config.workers)
    return env


def _write_sim_config(path: Path, config: BenchConfig, sessions: list[SimSession]) -> None:
    """The simulator's --config file: sessions and the latency (holds tokens: owner-only, deleted after)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {
                "sessions": [
                    {"user_id": s.user_id, "api_key": s.api_key, "access_token": s.access_token}
                    for s in sessions
                ],
                "faults": [{"latency_ms": config.latency_ms}],
            },
            handle,
        )


def _warm_cluster(config: BenchConfig, cluster: _Process, progress: Callable[[str], None]) -> None:
    """Wait until the cluster's workers run tasks: `dispatch_shard` with nothing to send, a few
    times per worker (each imports the engine and opens its database connection)."""
    from django_q.models import Task
    from django_q.tasks import async_task

    group = f"bench-warmup-{os.getpid()}-{secrets.token_hex(4)}"
    count = config.queue_workers
    tasks = 3 * count
    for i in range(tasks):
        async_task("replication.tasks.dispatch_shard", i % count, count, "bench-warmup", 0, 1.0, group=group)
    deadline = time.monotonic() + config.wait_s
    while Task.objects.filter(group=group).count() < tasks:
        cluster.check()
        if time.monotonic() > deadline:
            raise BenchError(
                f"the cluster ran no warm-up task in {config.wait_s:.0f} s:\n{cluster.log_tail()}"
            )
        time.sleep(0.1)
    failed = Task.objects.filter(group=group, success=False).count()
    if failed:
        raise BenchError(f"{failed} warm-up tasks failed:\n{cluster.log_tail()}")
    progress(f"cluster ready: {count} workers ran {tasks} warm-up tasks")


class _Subprocesses:
    """The bench's subprocesses (simulator, qcluster) on the throwaway database; stopped in reverse."""

    def __init__(self, config: BenchConfig, logdir: Path) -> None:
        self.config = config
        self.logdir = logdir
        self.env = _subprocess_env(config, database_url())
        self.processes: list[_Process] = []
        self.cluster: _Process | None = None

    def start_sim(self, sessions: list[SimSession]) -> str:
        """`manage.py kite_sim` on 127.0.0.1 (a free port) with the sessions and the latency; its root."""
        sim_config = self.logdir / "kite-sim.json"
        _write_sim_config(sim_config, self.config, sessions)
        sim = _Process(
            "kite_sim",
            ["kite_sim", "--host", "127.0.0.1", "--port", "0", "--config", str(sim_config)],
            env=self.env,
            logdir=self.logdir,
            stdout_pipe=True,
        )
        self.processes.append(sim)
        try:
            root = sim.read_line(timeout=self.config.wait_s)
        finally:
            sim_config.unlink()  # loaded (or failed): the tokens need not stay on disk
        if not root.startswith("http://127.0.0.1:"):
            raise BenchError(f"unexpected simulator address {root!r}:\n{sim.log_tail()}")
        return root

    def start_cluster(self, progress: Callable[[str], None], *, kite_root: str | None) -> None:
        """`manage.py qcluster` with K workers, warmed up."""
        if kite_root is not None:
            self.env["KITE_API_ROOT"] = kite_root
        self.cluster = _Process("qcluster", ["qcluster"], env=self.env, logdir=self.logdir, stdout_pipe=False)
        self.processes.append(self.cluster)
        _warm_cluster(self.config, self.cluster, progress)

    def check(self) -> None:
        for process in self.processes:
            process.check()

    def log_tail(self) -> str:
        return self.cluster.log_tail() if self.cluster is not None else ""

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@contextmanager
def _subprocesses(config: BenchConfig) -> Iterator[_Subprocesses]:
    with tempfile.TemporaryDirectory(prefix="pms-bench-") as tmp:
        procs = _Subprocesses(config, Path(tmp))
        try:
            yield procs
        finally:
            procs.stop()


def _wait_for_acks(config: BenchConfig, procs: _Subprocesses) -> float:
    """Queue mode: wait (bounded) until no child order is waiting to be sent or in flight;
    returns the `perf_counter()` instant it was seen."""
    pending = OrderMapping.objects.filter(
        quantity__gt=0, status__in=(MappingStatus.PLANNED, MappingStatus.SENDING)
    )
    deadline = time.monotonic() + config.wait_s
    while True:
        if not pending.exists():
            return time.perf_counter()
        procs.check()
        if time.monotonic() > deadline:
            raise BenchError(
                f"{pending.count()} child orders still unsent after {config.wait_s:.0f} s:\n"
                f"{procs.log_tail()}"
            )
        time.sleep(POLL_S)


# --- where the CPU went --------------------------------------------------------------------------


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError):
        return 100


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group (Linux
    /proc; 0.0 elsewhere)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended while we looked
        # After the command name: state, ppid, pgrp, ..., utime (12th), stime (13th).
        if len(fields) > 12 and int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _clock_ticks()


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a server process (PostgreSQL's postmaster): its own, its reaped children's,
    and its live children's (the backends, one per connection). 0.0 when it cannot be read."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            own = int(stat.parent.name) == pid
        except (OSError, ValueError):
            continue  # the process ended while we looked
        # After the command name: state, ppid, ..., utime (12th), stime, cutime, cstime (15th).
        if len(fields) > 14 and (own or int(fields[1]) == pid):
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / _clock_ticks()


def machine_busy_s() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat), or None when unavailable."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _clock_ticks()


@dataclass
class _CpuMeter:
    """CPU used from `start()` to `report()`: this process, each subprocess, the PostgreSQL server
    when BENCH_POSTGRES_PID names its postmaster (scripts/scale.sh does), the whole machine."""

    procs: _Subprocesses | None
    wall: float = 0.0
    own: float = 0.0
    machine: float | None = None
    groups: dict[str, float] = field(default_factory=dict)
    postgres_pid: int | None = None
    postgres: float = 0.0

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.own = time.process_time()
        self.machine = machine_busy_s()
        self.groups = {p.name: group_cpu_s(p.popen.pid) for p in self.procs.processes} if self.procs else {}
        raw = os.environ.get("BENCH_POSTGRES_PID", "")
        self.postgres_pid = int(raw) if raw.isdigit() and connection.vendor == "postgresql" else None
        if self.postgres_pid is not None:
            self.postgres = tree_cpu_s(self.postgres_pid)

    def report(self) -> str:
        wall = time.perf_counter() - self.wall
        parts = [f"bench process {time.process_time() - self.own:.1f} s"]
        if self.procs is not None:
            for p in self.procs.processes:
                parts.append(f"{p.name} {group_cpu_s(p.popen.pid) - self.groups.get(p.name, 0.0):.1f} s")
        if self.postgres_pid is not None:
            parts.append(f"postgresql {tree_cpu_s(self.postgres_pid) - self.postgres:.1f} s")
        busy = machine_busy_s()
        if busy is not None and self.machine is not None:
            parts.append(
                f"whole machine {busy - self.machine:.1f} s busy of {wall * (os.cpu_count() or 1):.1f} s "
                f"({os.cpu_count()} cores; includes the database and anything else running)"
            )
        return f"cpu during the event ({wall:.1f} s): " + ", ".join(parts)


# --- checks and the run -------------------------------------------------------------------------------


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
    grace = getattr(settings, "UNKNOWN_GRACE_SECONDS", 30)
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
    procs: _Subprocesses | None = None  # queue mode, or the simulator as a subprocess
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
        _raise_open_file_limit(config.children)
    sizing_ms = measure_sizing(config.sizing_children, config.rng)
    progress(f"sized {config.sizing_children} children in {sizing_ms:.1f} ms CPU")
    with throwaway_database("bench"):
        progress(f"throwaway database ready; seeding {config.children} children")
        sessions = _seed(config)
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
                setup.memory, restore = _use_memory_exchange(config)
                stack.callback(restore)
            if queue_mode or setup.sim == "process":
                setup.procs = stack.enter_context(_subprocesses(config))
            root: str | None = None
            if setup.sim == "process" and setup.procs is not None:
                root = setup.procs.start_sim(sessions)
                progress(f"simulator subprocess serving {root} with {len(sessions)} sessions")
            elif setup.sim == "thread":
                setup.running = stack.enter_context(_sim_in_process(config, sessions))
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
    cpu = _CpuMeter(setup.procs)
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
        seen = _wait_for_acks(config, setup.procs)
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
