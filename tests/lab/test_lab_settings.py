"""Issue 13 item 1: the lab leaves the product. Production settings (DEBUG off) run without the
`lab` app: it is not installed, none of its commands exist, nothing imports it, `check --deploy`
is clean, and simulator credentials are still refused off this machine (issue 11 defect 14).
Development (DEBUG on, what `make run` writes) and the test settings have it; LAB_ENABLED says
otherwise either way."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import get_commands

BASE_DIR = Path(__file__).resolve().parents[2]
LAB_COMMANDS = ("kite_sim", "bench_fanout", "soak", "demo")
# What a developer's shell could carry that would change what the settings decide.
CLEARED = ("DEBUG", "LAB_ENABLED", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE", "KITE_API_ROOT")

# Run with the real settings (pms.settings) in a subprocess: what is installed and imported, and
# whether the Kite adapter still refuses a simulator's credentials for the real Kite.
PROBE = """
import json, sys
import django
django.setup()
from django.conf import settings
from django.core.management import get_commands
import pms.urls  # the whole URL tree: every view module of the product
from brokers.errors import BrokerError
from brokers.kite.client import KiteBroker
from brokers.kite.instruments import InstrumentCache
from brokers.simcreds import API_KEY_CHARS, new_simulator_credential
import socket

sent = []
def getaddrinfo(host, port, *args, **kwargs):  # every HTTP path resolves before it connects
    sent.append(f"{host}:{port}")
    raise socket.gaierror(socket.EAI_NONAME, "no network in this probe")
socket.getaddrinfo = getaddrinfo

client = KiteBroker(
    api_key=new_simulator_credential(API_KEY_CHARS),
    access_token=new_simulator_credential(),
    root=settings.KITE_API_ROOT,
    instrument_cache=InstrumentCache(),
)
try:
    client.funds()
    refusal = ""
except BrokerError as exc:
    refusal = exc.code
print(json.dumps({
    "installed": "lab" in settings.INSTALLED_APPS,
    "lab_enabled": settings.LAB_ENABLED,
    "imported": sorted(name for name in sys.modules if name == "lab" or name.startswith("lab.")),
    "commands": sorted(set(get_commands()) & {"kite_sim", "bench_fanout", "soak", "demo"}),
    "refusal": refusal,
    "sent": sent,
    "root": settings.KITE_API_ROOT,
}))
"""


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env.update(
        DJANGO_SETTINGS_MODULE="pms.settings",
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'lab.sqlite3'}",
        **values,
    )
    return env


def _production(tmp_path: Path, **values: str) -> dict[str, str]:
    return _env(
        tmp_path,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="pms.example.com",
        **values,
    )


def _probe(env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lab_production_settings_run_without_the_lab_and_still_refuse_simulator_credentials(tmp_path):
    """Issue 13 item 1 (and issue 11 defect 14): with production settings (DEBUG off, LAB_ENABLED
    unset) `lab` is not installed, no lab command exists, loading the settings, apps and every URL
    imports no lab module, and the Kite adapter refuses a simulator's credentials for the real
    Kite (api.kite.trade) before any request: the guard lives in brokers, not in the lab."""
    seen = _probe(_production(tmp_path))

    assert seen["installed"] is False
    assert seen["lab_enabled"] is False
    assert seen["imported"] == []
    assert seen["commands"] == []
    assert seen["root"] == "https://api.kite.trade"
    assert seen["refusal"] == "simulator_credentials"
    assert seen["sent"] == []


def test_lab_production_check_deploy_is_clean_and_lab_commands_are_unknown(tmp_path):
    """Issue 13 item 1: `manage.py check --deploy --fail-level WARNING` starts and passes with
    production settings and no lab; `manage.py kite_sim` there is an unknown command."""
    env = _production(tmp_path)

    check = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    sim = _manage(env, "kite_sim", "--port", "0")

    assert check.returncode == 0, check.stdout + check.stderr
    assert "System check identified no issues" in check.stdout
    assert sim.returncode != 0
    assert "Unknown command: 'kite_sim'" in sim.stderr


def test_lab_is_installed_in_development_and_switched_by_lab_enabled(tmp_path):
    """Issue 13 item 1: DEBUG on (the `.env` of `make run`) installs the lab and its commands;
    LAB_ENABLED=false leaves it out there, LAB_ENABLED=true puts it in with DEBUG off (what `make
    run KITE=sim`, the soak and the scale script set)."""
    development = _probe(_env(tmp_path, DEBUG="true"))
    development_off = _probe(_env(tmp_path, DEBUG="true", LAB_ENABLED="false"))
    production_on = _probe(_production(tmp_path, LAB_ENABLED="true"))

    assert development["installed"] is True
    assert "lab.apps" in development["imported"]  # the probe sees the lab when it is there
    assert development["commands"] == sorted(LAB_COMMANDS)
    assert development_off["installed"] is False
    assert development_off["commands"] == []
    assert production_on["installed"] is True
    assert production_on["commands"] == sorted(LAB_COMMANDS)


def test_lab_is_installed_in_the_test_settings():
    """Issue 13 item 1: the test settings always install the lab (the suite drives the simulator,
    the soak and the demo desk), whatever DEBUG and LAB_ENABLED say."""
    assert "lab" in settings.INSTALLED_APPS
    assert settings.LAB_ENABLED is True
    assert set(LAB_COMMANDS) <= set(get_commands())
