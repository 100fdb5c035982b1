"""`manage.py dhan_sim`: prints its roots, serves on loopback only (HTTP and the order-update
socket), answers Dhan's error shapes, stops on SIGTERM."""

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
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]


def test_dhan_sim_command_prints_roots_serves_and_stops_on_sigterm(tmp_path):
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"clients": [{"client_id": "1100000001", "pin": "123456"}]}))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "dhan_sim", "--port", "0", "--config", str(config)],
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
        health = requests.get(root + "/_sim/health", timeout=5)
        no_token = requests.get(root + "/v2/fundlimit", timeout=5)
        wrong_pin = requests.post(
            root + "/app/generateAccessToken",
            params={"dhanClientId": "1100000001", "pin": "000000", "totp": "123456"},
            timeout=5,
        )
        with connect(ws_root, proxy=None) as ws:
            ws.send(
                json.dumps(
                    {"LoginReq": {"MsgCode": 42, "ClientId": "1100000001", "Token": "x"}, "UserType": "SELF"}
                )
            )
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            close_code = ws.close_code
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()

    assert root.startswith("http://127.0.0.1:") and ws_root.startswith("ws://127.0.0.1:")
    assert health.json()["status"] == "ok"
    assert (no_token.status_code, no_token.json()["errorCode"]) == (401, "DH-901")
    assert (wrong_pin.status_code, wrong_pin.json()["errorCode"]) == (401, "DH-901")
    assert close_code == 4001
    assert process.returncode == 0, err
    assert "Dhan simulator stopped." in out


def test_dhan_sim_command_refuses_a_public_address():
    with pytest.raises(CommandError, match="loopback"):
        call_command("dhan_sim", "--port", "0", "--host", "0.0.0.0")  # noqa: S104  (refusing it is the point)
