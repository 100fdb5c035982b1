"""`manage.py kite_sim`: prints its root URL, serves on loopback only, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command

from lab.management.commands.kite_sim import run_kite_sim

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "manage.py", "kite_sim", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kite_sim_command_prints_root_serves_and_stops_on_sigterm(tmp_path):
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"sessions": [{"user_id": "C1", "api_key": "k1", "access_token": "t1"}]}))
    process = manage("--port", "0", "--config", str(config))
    try:
        assert process.stdout is not None
        root = process.stdout.readline().strip()
        health = requests.get(root + "/_sim/health", timeout=5)
        no_token = requests.get(root + "/user/profile", timeout=5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()

    assert root.startswith("http://127.0.0.1:")
    assert health.json()["data"] == {"ok": True}
    assert no_token.status_code == 403
    assert process.returncode == 0, err
    assert "Kite simulator stopped." in out


def test_kite_sim_command_refuses_a_public_address():
    with pytest.raises(CommandError, match="loopback"):
        call_command("kite_sim", "--port", "0", "--host", "0.0.0.0")  # noqa: S104  (refusing it is the point)


def test_kite_sim_command_refuses_a_bad_config(tmp_path):
    config = tmp_path / "sim.json"
    config.write_text("{not json")

    with pytest.raises(CommandError, match="cannot read"):
        call_command("kite_sim", "--port", "0", "--config", str(config))


def test_run_kite_sim_applies_config_and_order_rate():
    running = run_kite_sim(
        host="127.0.0.1",
        port=0,
        config={"apps": [{"api_key": "appkey1", "api_secret": "appsecret1"}]},
        order_rate=3,
    )
    try:
        assert running.sim.store.app("appkey1") is not None
        assert running.sim.limiter.per_second == 3
    finally:
        running.stop()
