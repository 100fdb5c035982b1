"""Issue 14 item 3: Ctrl-C stops every process of `make run` cleanly, with exit 0.

The processes of the Procfile (runserver, run_orchestrator, qcluster) run under
scripts/run_procfile.py on a throwaway SQLite database and free loopback ports. Ctrl-C is typed
into a pseudo-terminal, as a person would; the runner's exit status is 0, each process reports
rc=0 and no process of theirs (qcluster's workers included) is left.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parents[2]
RUNNER = BASE_DIR / "scripts" / "run_procfile.py"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CLEARED = ("WEB_PORT", "KITE_SIM_PORT", "LAB_ENABLED", "Q_SYNC", "REDIS_URL", "DJANGO_SETTINGS_MODULE")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups and ptys of Linux")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env.update(
        {
            "DEBUG": "true",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite3'}",
            "WAKE_FILE": str(tmp_path / "wake"),
            "WEB_PORT": str(_free_port()),
            "POLL_INTERVAL": "0.5",
        }
    )
    return env


def _migrate(env: dict[str, str], *seed_flags: str) -> None:
    for args in (("migrate", "--noinput"), ("paper", "seed"), ("seed_demo", *seed_flags)):
        done = subprocess.run(
            [str(BASE_DIR / ".venv/bin/python"), "manage.py", *args],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr


class Terminal:
    """A command on a pseudo-terminal of its own (its controlling terminal): Ctrl-C is typed."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()

        def become_terminal_session() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=become_terminal_session,
        )
        os.close(slave)
        self.output = b""

    def read(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the other side closed
                    return
                if not chunk:
                    return
                self.output += chunk

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def wait_for(self, done: Callable[[str], bool], seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not done(self.text):
            if self.process.poll() is not None:
                break
            self.read(0.2)
        assert done(self.text), self.text[-4000:]

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def finish(self, seconds: float) -> int:
        end = time.monotonic() + seconds
        while self.process.poll() is None and time.monotonic() < end:
            self.read(0.2)
        self.read(0.5)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError("still running after Ctrl-C:\n" + self.text[-4000:])
        os.close(self.master)
        return self.process.returncode


def _started_pids(text: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"\| (\w+) started \(pid=(\d+)\)", text)}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _ready(port: str) -> Callable[[str], bool]:
    """Every process is up: the cluster runs, the engine ticked, the web answers."""

    def ready(text: str) -> bool:
        if "Cluster" not in text or "running." not in text or "tick " not in text:
            return False
        try:
            OPENER.open(f"http://127.0.0.1:{port}/staff/", timeout=2)
        except urllib.error.HTTPError:
            return True  # any answer of the app (the login redirect is followed)
        except OSError:
            return False
        return True

    return ready


def _assert_clean(text: str, code: int, names: set[str]) -> None:
    assert code == 0, text[-4000:]
    pids = _started_pids(text)
    assert set(pids) == names, text[-4000:]
    for name in names:
        assert f"{name} stopped (rc=0)" in text, text[-4000:]
    assert "every process stopped cleanly" in text
    assert "SIGKILL" not in text and "killing" not in text
    # Nothing of theirs is left: each ran in its own process group (qcluster's workers too).
    left = [name for name, pid in pids.items() if _group_alive(pid)]
    assert left == [], f"left running: {left}"


def test_ctrl_c_stops_every_procfile_process_with_exit_0(tmp_path):
    """Ctrl-C typed at the terminal running the Procfile: runserver, the orchestrator (after its tick)
    and the django-q2 cluster (its sentinel, workers, monitor and pusher) all exit 0, and so does
    the runner; nothing is killed."""
    env = _env(tmp_path)
    _migrate(env)
    term = Terminal([str(BASE_DIR / ".venv/bin/python"), str(RUNNER), "Procfile"], env)
    term.wait_for(_ready(env["WEB_PORT"]), 90)
    term.ctrl_c()
    code = term.finish(40)
    _assert_clean(term.text, code, {"web", "engine", "worker"})
    assert "SIGINT received" in term.text
    assert "orchestrator" in term.text and "stopped after" in term.text  # the tick finished


def test_ctrl_c_stops_the_kite_sim_procfile_and_the_order_stream_with_exit_0(tmp_path):
    """`make run KITE=sim`'s Procfile (the Kite simulator, web, engine on the Kite path, cluster)
    plus the master's order stream (`master_stream`, Procfile.prod's `stream`): Ctrl-C, exit 0."""
    env = _env(tmp_path)
    sim_port = str(_free_port())
    config = tmp_path / "kite-sim.json"
    env.update(
        {
            "LAB_ENABLED": "true",
            "KITE_SIM_PORT": sim_port,
            "KITE_SIM_CONFIG": str(config),
            "KITE_API_ROOT": f"http://127.0.0.1:{sim_port}",
            "KITE_LOGIN_URL": f"http://127.0.0.1:{sim_port}/connect/login",
            "KITE_WS_ROOT": f"ws://127.0.0.1:{sim_port}",
        }
    )
    _migrate(env, "--kite-sim", str(config))
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        (BASE_DIR / "Procfile.kite-sim").read_text()
        + "stream: exec .venv/bin/python manage.py master_stream --check-every 1\n"
    )
    term = Terminal([str(BASE_DIR / ".venv/bin/python"), str(RUNNER), str(procfile)], env)
    term.wait_for(_ready(env["WEB_PORT"]), 90)
    term.wait_for(lambda text: "order stream" in text, 30)
    term.ctrl_c()
    code = term.finish(40)
    _assert_clean(term.text, code, {"sim", "web", "engine", "worker", "stream"})
    assert "Kite simulator stopped." in term.text


def test_sigterm_to_the_runner_stops_every_process_with_exit_0(tmp_path):
    """A supervisor's SIGTERM (no terminal): each process gets SIGINT, all exit 0, the runner too."""
    env = _env(tmp_path)
    _migrate(env)
    runner = subprocess.Popen(
        [str(BASE_DIR / ".venv/bin/python"), str(RUNNER), "Procfile"],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert runner.stdout is not None
    os.set_blocking(runner.stdout.fileno(), False)
    text = ""
    ready = _ready(env["WEB_PORT"])
    end = time.monotonic() + 90
    while time.monotonic() < end and not ready(text):
        time.sleep(0.2)
        text += (runner.stdout.read() or b"").decode("utf-8", "replace")
    assert ready(text), text[-4000:]
    runner.send_signal(signal.SIGTERM)
    try:
        code = runner.wait(timeout=40)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    time.sleep(0.2)
    text += (runner.stdout.read() or b"").decode("utf-8", "replace")
    _assert_clean(text, code, {"web", "engine", "worker"})
    assert "SIGTERM received" in text


def test_a_process_that_dies_stops_the_others_and_fails_the_run(tmp_path):
    """One process ending by itself is a failure of the run: the others are stopped and the
    runner exits with that process's status."""
    procfile = tmp_path / "Procfile"
    procfile.write_text("sleeper: exec sleep 30\ncrasher: exec sh -c 'sleep 0.5; exit 3'\n")
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(procfile)],
        cwd=BASE_DIR,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3, done.stdout
    assert "crasher ended by itself: stopping the others" in done.stdout
    assert "sleeper stopped (rc=-2)" in done.stdout


def test_make_run_prints_the_staff_url_and_stops_on_ctrl_c_with_exit_0(tmp_path):
    """`make run` end to end on a throwaway database: it says where to go (/staff/, not /admin/),
    and Ctrl-C ends it with exit 0 and no `make: *** ... Interrupt`."""
    env = _env(tmp_path)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # an outer make (make test) is not this one's
        env.pop(name, None)
    port = env["WEB_PORT"]
    # -o .env: never write a .env into the working tree (the environment carries the settings).
    term = Terminal(["make", "--no-print-directory", "-o", ".env", "run", f"WEB_PORT={port}"], env)
    term.wait_for(_ready(port), 240)
    assert f"http://127.0.0.1:{port}/staff/" in term.text
    assert "/admin/" not in term.text
    term.ctrl_c()
    code = term.finish(40)
    _assert_clean(term.text, code, {"web", "engine", "worker"})
    assert "Interrupt" not in term.text and "Error" not in term.text
