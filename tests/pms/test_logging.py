"""Issue 14 item 3: a calm log. The engine prints the ticks that did something and one heartbeat a
minute (not a line a second); each 4xx is one line (the server's), not two."""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from replication.management.commands.run_orchestrator import run_loop
from replication.models import TickRun
from tests.engine_helpers import FUT, build_desk

BASE_DIR = Path(__file__).resolve().parents[2]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _loop(lines: list[str], ticks: int, clock) -> int:
    return run_loop(
        stop=threading.Event(),
        interval=0.001,
        max_ticks=ticks,
        write=lines.append,
        heartbeat_seconds=60,
        clock=clock,
    )


@pytest.mark.django_db
def test_engine_prints_busy_ticks_and_a_heartbeat_a_minute_not_every_idle_tick():
    desk = build_desk()
    seconds = itertools.count(0.0, 5.0)  # each look at the clock: 5 s later

    idle: list[str] = []
    _loop(idle, 40, lambda: next(seconds))
    tick_lines = [line for line in idle if line.startswith("tick ")]
    heartbeats = [line for line in idle if line.startswith("heartbeat: ")]
    # 40 idle ticks: the first says who leads; the rest are summed up in the heartbeats.
    assert len(tick_lines) == 1 and "events=0" in tick_lines[0]
    assert 2 <= len(heartbeats) <= 4
    assert "quiet" in heartbeats[0] and "leader" in heartbeats[0] and "owed exits 0" in heartbeats[0]
    assert TickRun.objects.count() == 40  # every tick still ran and was recorded

    desk.place("BUY", FUT, 150)  # the master trades: that tick and its fills are news
    busy: list[str] = []
    _loop(busy, 10, lambda: next(seconds))
    tick_lines = [line for line in busy if line.startswith("tick ")]
    assert any("events=1" in line and "accepted=4" in line for line in tick_lines)
    assert len(tick_lines) <= 3  # the event, its fills, the leader line of the new loop
    assert desk.positions(FUT)["C2"] == 300


@pytest.mark.django_db
def test_run_orchestrator_every_tick_prints_each_tick():
    build_desk()
    lines: list[str] = []
    run_loop(stop=threading.Event(), interval=0.001, max_ticks=5, write=lines.append)
    assert len([line for line in lines if line.startswith("tick ")]) == 5


def test_each_4xx_is_one_log_line(tmp_path):
    """runserver (as `make run` starts it): a 404 and a 401 each leave exactly one line in the
    log, the server's access line with the status."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "LOG_LEVEL")}
    env.update(
        {
            "DEBUG": "true",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'log.sqlite3'}",
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    log = tmp_path / "web.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=BASE_DIR,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            statuses = {}
            end = time.monotonic() + 60
            for path in ("/no-such-page-here/", "/api/v1/accounts"):
                while True:
                    try:
                        OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=5)
                        statuses[path] = 200
                        break
                    except urllib.error.HTTPError as error:
                        statuses[path] = error.code
                        break
                    except OSError:
                        assert time.monotonic() < end, log.read_text()
                        time.sleep(0.2)
            time.sleep(0.5)
        finally:
            server.terminate()
            server.wait(timeout=20)
    text = log.read_text()
    assert statuses == {"/no-such-page-here/": 404, "/api/v1/accounts": 401}
    page_lines = [line for line in text.splitlines() if "no-such-page-here" in line]
    api_lines = [line for line in text.splitlines() if "/api/v1/accounts" in line]
    assert len(page_lines) == 1 and " 404 " in page_lines[0], text
    assert len(api_lines) == 1 and " 401 " in api_lines[0], text
