"""`manage.py alice_sim`: prints its base URL and feed URL, serves Alice Blue's envelopes and the
vendor login on loopback only, stops on SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[2]


def test_alice_sim_command_serves_login_and_envelopes_and_stops_on_sigterm(tmp_path):
    config = tmp_path / "sim.json"
    config.write_text(
        json.dumps({"clients": [{"user_id": "C1", "app_code": "alicesimapp", "api_secret": "s3cret"}]})
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "alice_sim", "--port", "0", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        root = process.stdout.readline().strip()
        ws_root = process.stdout.readline().strip()
        assert root.startswith("http://127.0.0.1:") and root.endswith("/")
        assert ws_root.startswith("ws://127.0.0.1:")
        no_session = requests.get(root + "open-api/od/v1/limits/", timeout=5)
        code = requests.post(root + "_sim/auth-code", json={"user_id": "C1"}, timeout=5).json()["authCode"]
        wrong = requests.post(
            root + "open-api/od/v1/vendor/getUserDetails", json={"checkSum": "x"}, timeout=5
        )
        checksum = hashlib.sha256(f"C1{code}s3cret".encode()).hexdigest()
        login = requests.post(
            root + "open-api/od/v1/vendor/getUserDetails", json={"checkSum": checksum}, timeout=5
        )
        assert (no_session.status_code, no_session.json()["status"]) == (401, "Not_ok")
        assert "EC087" in no_session.json()["message"]
        assert wrong.json() == {"stat": "Not_ok", "emsg": "Invalid auth code"}
        assert login.json()["stat"] == "Ok" and login.json()["userSession"].startswith("alicesim")
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Alice Blue simulator stopped." in out


def test_alice_sim_command_refuses_a_non_loopback_host():
    with pytest.raises(CommandError):
        call_command("alice_sim", "--port", "0", "--host", "0.0.0.0")  # noqa: S104 - refused, never bound
