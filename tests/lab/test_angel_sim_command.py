"""`manage.py angel_sim`: prints its root URL, serves on loopback only, stops on SIGTERM."""

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

ROOT = Path(__file__).resolve().parents[2]


def test_angel_sim_command_prints_root_serves_and_stops_on_sigterm(tmp_path):
    config = tmp_path / "sim.json"
    config.write_text(
        json.dumps({"clients": [{"client_code": "C1", "pin": "1234", "api_key": "angelsimk1"}]})
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "angel_sim", "--port", "0", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        root = process.stdout.readline().strip()
        health = requests.get(root + "/_sim/health", timeout=5)
        no_token = requests.get(root + "/rest/secure/angelbroking/user/v1/getRMS", timeout=5)
        wrong_pin = requests.post(
            root + "/rest/auth/angelbroking/user/v1/loginByPassword",
            json={"clientcode": "C1", "password": "0000", "totp": "123456"},
            headers={"X-PrivateKey": "angelsimk1"},
            timeout=5,
        )
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()

    assert root.startswith("http://127.0.0.1:")
    assert health.json() == {"status": "ok"}
    assert (no_token.status_code, no_token.json()["errorCode"]) == (200, "AG8003")
    assert wrong_pin.json()["status"] is False and wrong_pin.json()["errorcode"] == "AB1000"
    assert process.returncode == 0, err
    assert "Angel simulator stopped." in out


def test_angel_sim_command_refuses_a_public_address():
    with pytest.raises(CommandError, match="loopback"):
        call_command("angel_sim", "--port", "0", "--host", "0.0.0.0")  # noqa: S104  (refusing it is the point)


def test_angel_sim_command_refuses_a_bad_config(tmp_path):
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"apps": []}))
    with pytest.raises(CommandError, match="unknown configuration keys"):
        call_command("angel_sim", "--port", "0", "--config", str(config))


@pytest.mark.django_db(transaction=True)
def test_angel_sim_command_links_demo_children_for_the_mixed_demo(tmp_path):
    from accounts.management.commands.seed_demo import seed_demo
    from accounts.models import Account, Broker
    from brokers.angel.budget import forget_budgets
    from brokers.registry import build_client
    from lab.management.commands.angel_sim import run_angel_sim

    seed_demo()
    path = tmp_path / "angel-sim.json"
    call_command(
        "angel_sim", "--link-demo", "CHILD1,CHILD2", "--paper-demo", "CHILD3", "--write-config", str(path)
    )

    config = json.loads(path.read_text())
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [c["client_code"] for c in config["clients"]] == ["CHILD1", "CHILD2"]
    c1 = Account.objects.get(broker_user_id="CHILD1")
    assert c1.broker == Broker.ANGEL and c1.secret("pin") == config["clients"][0]["pin"]
    assert Account.objects.get(broker_user_id="CHILD3").broker == Broker.PAPER
    assert Account.objects.get(broker_user_id="CHILD4").broker == Broker.PAPER  # untouched
    forget_budgets()
    running = run_angel_sim(host="127.0.0.1", port=0, config=config)
    try:
        from django.test import override_settings

        with override_settings(ANGEL_API_ROOT=running.root):
            funds = build_client(c1.broker_credentials()).funds()  # logs in with the stored PIN and TOTP
    finally:
        running.stop()
    assert funds.capital > 0
