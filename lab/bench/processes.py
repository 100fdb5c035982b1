"""Queue mode and the simulator as a process: the bench's `manage.py` subprocesses on the
throwaway database."""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from lab.bench.config import (
    BASE_DIR,
    POLL_S,
    STOP_GRACE_S,
    BenchConfig,
    BenchError,
)
from lab.bench.desk import (
    SimSession,
)
from replication.models import MappingStatus, OrderMapping


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
    q_cluster: dict[str, Any] = settings.Q_CLUSTER
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
        LAB_ENABLED="true",  # the simulator subprocess is the lab's `manage.py kite_sim`
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


class Subprocesses:
    """The bench's subprocesses (simulator, qcluster) on the throwaway database; stopped in reverse."""

    def __init__(self, config: BenchConfig, logdir: Path) -> None:
        self.config = config
        self.logdir = logdir
        self.env = _subprocess_env(config, database_url())
        self.processes: list[_Process] = []
        self.cluster: _Process | None = None

    def start_sim(self, sessions: list[SimSession], *, memory_persist: str | None = None) -> tuple[str, str]:
        """`manage.py kite_sim` on 127.0.0.1 (a free port) with the sessions and the latency: its
        root and its order-update WebSocket's root. `memory_persist`: the bench mode
        (`--memory-orders`), orders of every user but this one answered from memory."""
        sim_config = self.logdir / "kite-sim.json"
        _write_sim_config(sim_config, self.config, sessions)
        extra = ["--memory-orders", "--persist-user", memory_persist] if memory_persist else []
        sim = _Process(
            "kite_sim",
            ["kite_sim", "--host", "127.0.0.1", "--port", "0", "--config", str(sim_config), *extra],
            env=self.env,
            logdir=self.logdir,
            stdout_pipe=True,
        )
        self.processes.append(sim)
        try:
            root = sim.read_line(timeout=self.config.wait_s)
            # Printed with the root, so it is in the pipe's buffer already (select would not see it).
            ws_root = sim.popen.stdout.readline().decode().strip() if sim.popen.stdout else ""
        finally:
            sim_config.unlink()  # loaded (or failed): the tokens need not stay on disk
        if not root.startswith("http://127.0.0.1:") or not ws_root.startswith("ws://127.0.0.1:"):
            raise BenchError(f"unexpected simulator address {root!r} {ws_root!r}:\n{sim.log_tail()}")
        return root, ws_root

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
def subprocesses(config: BenchConfig) -> Iterator[Subprocesses]:
    with tempfile.TemporaryDirectory(prefix="pms-bench-") as tmp:
        procs = Subprocesses(config, Path(tmp))
        try:
            yield procs
        finally:
            procs.stop()


def wait_for_acks(config: BenchConfig, procs: Subprocesses) -> float:
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
