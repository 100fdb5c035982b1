"""Crash and restart with a real SIGKILL at every failpoint (issue 7), on the Kite path.

The Kite simulator (`manage.py kite_sim`) and the orchestrator (`manage.py run_orchestrator`) run
as subprocesses on one SQLite file, the DESIGN §3.6 desk moved onto Kite. The orchestrator starts
with one failpoint armed (`PMS_FAILPOINTS=<point>=kill`), the master buys 2 lots, and the process
dies by SIGKILL at that point. A fresh orchestrator without failpoints takes over once the dead
one's lease has run out; when no child order is in flight any more: at most one broker order per
tag, every wanted order exists exactly once, and the children hold 75/300/0/75/75.

The subprocesses use the production settings (`pms.settings`), configured by the environment:
the test settings pin UNKNOWN_GRACE_SECONDS to 0 (and the fan-out inline), and a grace shorter
than the simulator's answer time would let a restart send again an order that is still arriving.
The test's own steps on the shared file (setup, the master's order, reading the outcome) run in
`tests/crash_harness.py` subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from cryptography.fernet import Fernet

# These tests make their own SQLite files for the subprocesses, whatever DATABASE_URL says: the
# PostgreSQL run (make test-pg) would repeat them unchanged, so it leaves them to make test.
pytestmark = pytest.mark.skipif(
    "postgres" in os.environ.get("DATABASE_URL", ""),
    reason="runs on its own SQLite files; already covered by make test",
)


ROOT = Path(__file__).resolve().parents[2]
FUT = "NIFTY25DECFUT"
EXPECTED = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}  # DESIGN §3.6 step 1
WANTED = 4  # C3 is skipped (below one lot)
# The engine calls an unanswered order absent only after this long; the simulator (no faults)
# answers in milliseconds, so a restart never re-sends an order that is still on its way.
GRACE_S = 3
LEASE_TTL_S = 3  # how long a restart waits for the killed leader's lease
WAIT_S = 60  # every wait is bounded
INVARIANTS = ("duplicates", "orphans", "lost", "unsettled", "drift")  # lab.soak.Findings


class Proc:
    """A subprocess in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGTERM the group (the orchestrator finishes its tick), SIGKILL what is left."""
        with contextlib.suppress(ProcessLookupError):
            if self.popen.poll() is None:
                os.killpg(self.popen.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=10)
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._log.close()


class World:
    """One database file, the simulator and the orchestrators that run on it."""

    def __init__(self, db: Path, sim_config: Path, tmp: Path, key: str) -> None:
        self.tmp = tmp
        self.sim_config = sim_config
        self.procs: list[Proc] = []
        self.env = {k: v for k, v in os.environ.items() if k not in ("PMS_FAILPOINTS", "DATABASE_URL")}
        self.env.update(
            DJANGO_SETTINGS_MODULE="pms.settings",
            DATABASE_URL=f"sqlite:///{db}",
            SECRET_KEY="crash-restart-test-only",
            FIELD_ENCRYPTION_KEY=key,
            DEBUG="false",
            LAB_ENABLED="true",  # `manage.py kite_sim` is a command of the lab app
            UNKNOWN_GRACE_SECONDS=str(GRACE_S),
            LEASE_TTL_SECONDS=str(LEASE_TTL_S),
            FANOUT_WORKERS="4",
            FANOUT_FIRST_WAVE="0",  # the whole group at once; the first-wave tests set their own
            FANOUT_MODE="threads",
            REPLICATION_MODE="order",
            DRY_RUN="false",
            CHILD_MARGIN_PREFLIGHT="false",
            MAX_EVENT_AGE="300",
            KITE_TIMEOUT_S="5",
            PAPER_LATENCY_MS="0",
            REDIS_URL="",
            WAKE_FILE=str(tmp / "engine-wake"),
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )

    def start(self, name: str, args: list[str], **env: str) -> Proc:
        proc = Proc(f"{name}-{len(self.procs)}", args, env={**self.env, **env}, logdir=self.tmp)
        self.procs.append(proc)
        return proc

    def start_sim(self) -> None:
        sim = self.start(
            "kite_sim", ["manage.py", "kite_sim", "--port", "0", "--config", str(self.sim_config)]
        )
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            first = sim.log().split("\n", 1)[0].strip()
            if first.startswith("http://127.0.0.1:"):
                self.env["KITE_API_ROOT"] = first
                return
            if sim.popen.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"the simulator did not start:\n{sim.log()}")

    def start_orchestrator(self, failpoints: str = "", **env: str) -> Proc:
        args = ["manage.py", "run_orchestrator", "--interval", "0.2"]
        return self.start("orchestrator", args, PMS_FAILPOINTS=failpoints, **env)

    def harness(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tests.crash_harness", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT_S + 30,
            check=False,
        )
        assert done.returncode in ok, (
            f"harness {args}: {done.returncode}\n{done.stdout}{done.stderr}\n{self.logs()}"
        )
        return done.stdout

    def state(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = json.loads(self.harness("state"))
        return snapshot

    def settle(self) -> dict[str, Any]:
        """Wait (bounded) until no child order is in flight; the state then."""
        out = self.harness("settle", str(WAIT_S), ok=(0, 3))
        snapshot: dict[str, Any] = json.loads(out)
        unsettled = {t: m["status"] for t, m in snapshot["wanted"].items() if m["status"] != "filled"}
        assert not unsettled, f"not settled in {WAIT_S} s: {unsettled}\n{self.logs()}"
        return snapshot

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()}" for p in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A migrated database with the desk on the Kite path (made once; each test copies it)."""
    tmp = tmp_path_factory.mktemp("crash-template")
    key = Fernet.generate_key().decode()
    db, sim_config = tmp / "template.sqlite3", tmp / "sim.json"
    world = World(db, sim_config, tmp, key)
    world.harness("setup", str(sim_config))
    return db, sim_config, key


@pytest.fixture
def world(template: tuple[Path, Path, str], tmp_path: Path) -> Iterator[World]:
    source, sim_config, key = template
    db = tmp_path / "crash.sqlite3"
    shutil.copyfile(source, db)
    w = World(db, sim_config, tmp_path, key)
    try:
        yield w
    finally:
        w.stop()


def _statuses(snapshot: dict[str, Any]) -> list[str]:
    return sorted(m["status"] for m in snapshot["wanted"].values())


def _orders_out(snapshot: dict[str, Any]) -> int:
    return sum(snapshot["orders_per_tag"].values())


def _assert_converged(snapshot: dict[str, Any], logs: str) -> None:
    wanted, per_tag = snapshot["wanted"], snapshot["orders_per_tag"]
    assert len(wanted) == WANTED, logs
    assert all(n == 1 for n in per_tag.values()), per_tag  # at most one broker order per tag
    assert {tag: per_tag.get(tag, 0) for tag in wanted} == dict.fromkeys(wanted, 1)  # every wanted order
    assert set(per_tag) == set(wanted)  # and no order without an intent
    for tag, mapping in wanted.items():
        assert (mapping["status"], mapping["filled"]) == ("filled", mapping["quantity"]), tag
        assert snapshot["filled_at_exchange"][tag] == mapping["quantity"], tag
    assert snapshot["positions"] == EXPECTED
    assert snapshot["findings"] == {name: [] for name in INVARIANTS}


# What the dead process left behind, per point: intents only; orders out, no outcome written;
# acknowledgements written, the follow-up's look-up not.
CRASH_STATES = {
    "after_intent_commit": (["planned"] * WANTED, range(0, 1)),
    "after_broker_call": (["sending"] * WANTED, range(1, WANTED + 1)),
    "before_ack_commit": (["sending"] * WANTED, range(WANTED, WANTED + 1)),
    "mid_reconciliation": (["open"] * WANTED, range(WANTED, WANTED + 1)),
}


@pytest.mark.parametrize("point", sorted(CRASH_STATES))
def test_crash_restart_sigkill_at_failpoint_converges(world: World, point: str) -> None:
    world.start_sim()
    first = world.start_orchestrator(failpoints=f"{point}=kill")
    world.harness("place", "BUY", FUT, "150")  # after the orchestrator's first tick

    assert first.wait(timeout=WAIT_S) == -signal.SIGKILL, first.log()
    assert f"failpoint {point}: SIGKILL" in first.log()
    crashed = world.state()
    statuses, orders_out = CRASH_STATES[point]
    assert _statuses(crashed) == statuses, crashed
    assert _orders_out(crashed) in orders_out, crashed
    assert all(n == 1 for n in crashed["orders_per_tag"].values()), crashed

    world.start_orchestrator()
    settled = world.settle()
    _assert_converged(settled, world.logs())
    if point in ("after_broker_call", "before_ack_commit"):
        assert "found_by_tag" in settled["events"]  # the restart looked the sent orders up by tag


def test_crash_restart_sigkill_again_while_recovering_by_tag(world: World) -> None:
    """Sending one child at a time, killed after the second order went out; the next process is
    killed while it looks the SENDING tags up; the third finds two orders by tag and sends the two
    that never left, once each, only after the grace period proved them absent."""
    world.start_sim()
    first = world.start_orchestrator(failpoints="after_broker_call=kill:2", FANOUT_WORKERS="1")
    world.harness("place", "BUY", FUT, "150")
    assert first.wait(timeout=WAIT_S) == -signal.SIGKILL, first.log()
    crashed = world.state()
    assert _statuses(crashed) == ["sending"] * WANTED
    assert _orders_out(crashed) == 2

    second = world.start_orchestrator(failpoints="mid_reconciliation=kill")
    assert second.wait(timeout=WAIT_S) == -signal.SIGKILL, second.log()
    recovering = world.state()
    assert _statuses(recovering) == ["sending"] * WANTED  # it died before writing anything
    assert recovering["orders_per_tag"] == crashed["orders_per_tag"]

    world.start_orchestrator()
    settled = world.settle()
    _assert_converged(settled, world.logs())
    assert {"found_by_tag", "absent_resend"} <= set(settled["events"])


def test_crash_restart_sigkill_between_a_groups_first_wave_and_its_rest(world: World) -> None:
    """A first wave of two: the group's first two children's intents are committed and the
    rest is not sized yet when the process dies. The restart sizes the rest (every child without
    an intent) and every wanted order exists exactly once."""
    world.start_sim()
    first = world.start_orchestrator(failpoints="after_first_wave_commit=kill", FANOUT_FIRST_WAVE="2")
    world.harness("place", "BUY", FUT, "150")
    assert first.wait(timeout=WAIT_S) == -signal.SIGKILL, first.log()
    crashed = world.state()
    assert _statuses(crashed) == ["planned"] * 2, crashed  # C1's and C2's; nothing for C3-C5 yet
    assert _orders_out(crashed) == 0

    world.start_orchestrator()
    _assert_converged(world.settle(), world.logs())


def test_crash_restart_sigkill_while_the_first_wave_is_out_and_the_rest_unsized(world: World) -> None:
    """A first wave of two, killed after its first order went out: the group is
    claimed (DISPATCHED) and its rest may not be sized yet. The restart looks the first wave up
    by tag, sizes whatever is missing, and every wanted order exists exactly once."""
    world.start_sim()
    first = world.start_orchestrator(failpoints="after_broker_call=kill:1", FANOUT_FIRST_WAVE="2")
    world.harness("place", "BUY", FUT, "150")
    assert first.wait(timeout=WAIT_S) == -signal.SIGKILL, first.log()
    crashed = world.state()
    assert _orders_out(crashed) >= 1
    assert all(n == 1 for n in crashed["orders_per_tag"].values()), crashed

    world.start_orchestrator()
    _assert_converged(world.settle(), world.logs())
