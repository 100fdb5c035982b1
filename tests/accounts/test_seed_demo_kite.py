"""`manage.py seed_demo --kite-sim CONFIG`: the demo accounts on the Kite path against the simulator,
and back to paper without the flag; end to end through `kite_sim` with the config it writes."""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker, Role
from brokers.kite.instruments import shared_cache
from brokers.paper.models import InstrumentType, PaperOrder
from brokers.paper.seeding import paper_instruments_seed
from brokers.paper.selectors import paper_instrument_list
from brokers.paper.services import paper_order_place
from lab.kite_sim.server import RunningSim
from lab.management.commands.kite_sim import run_kite_sim
from replication.models import OrderMapping, ReplicationEvent
from replication.orchestrator import Orchestrator
from tests.kite_sim_helpers import kite_settings

DEMO_IDS = ["CHILD1", "CHILD2", "CHILD3", "CHILD4", "CHILD5", "MASTER1"]
REDIRECT_URL = "http://127.0.0.1:8000/accounts/kite/callback/"
PLACE = "POST /orders/{variety}"


@pytest.fixture(autouse=True)
def midday_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read a clock that starts at 12:00 IST (06:30 UTC) of today's UTC date.

    seed_demo renews a token within 10 minutes of Kite's daily 06:00 IST expiry, so a run at
    05:55 IST once saw "a second run keeps the live credentials" fail. The simulator checks tokens
    against the real clock; every token made here lives until 06:00 IST (00:30 UTC) of the next
    UTC day, after any real time of today.
    """
    start = timezone.now().replace(hour=6, minute=30, second=0, microsecond=0)
    began = time.monotonic()
    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=time.monotonic() - began))


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def demo_accounts() -> dict[str, Account]:
    return {a.broker_user_id: a for a in Account.objects.order_by("broker_user_id")}


def stored_credentials() -> dict[str, tuple[str, str, str]]:
    return {
        user_id: (a.secret("api_key"), a.secret("api_secret"), a.secret("access_token"))
        for user_id, a in demo_accounts().items()
    }


def read_config(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def assert_config_matches_accounts(path: Path) -> None:
    config = read_config(path)
    accounts = demo_accounts()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config["faults"] == []
    assert sorted(app["user_id"] for app in config["apps"]) == DEMO_IDS
    assert sorted(s["user_id"] for s in config["sessions"]) == DEMO_IDS
    for app in config["apps"]:
        account = accounts[app["user_id"]]
        assert app["api_key"] == account.secret("api_key")
        assert app["api_secret"] == account.secret("api_secret")
        assert app["redirect_url"] == REDIRECT_URL
    for session in config["sessions"]:
        account = accounts[session["user_id"]]
        assert session["api_key"] == account.secret("api_key")
        assert session["access_token"] == account.secret("access_token")
        assert session["expires_at"] == account.token_expires_at.isoformat()


@pytest.mark.django_db
def test_seed_demo_kite_sim_round_trips_kite_and_paper_without_duplicates(tmp_path):
    config = tmp_path / ".kite-sim.json"
    seed()  # first `make run`: paper
    paper_ids = {a.broker_user_id: a.pk for a in Account.objects.all()}

    to_kite = seed("--kite-sim", str(config))

    accounts = demo_accounts()
    assert {user_id: a.pk for user_id, a in accounts.items()} == paper_ids  # moved, not re-created
    assert all(a.broker == Broker.KITE and a.status == AccountStatus.ACTIVE for a in accounts.values())
    assert all(a.has_consent and a.token_expires_at > timezone.now() for a in accounts.values())
    assert accounts["MASTER1"].role == Role.MASTER
    assert_config_matches_accounts(config)
    for secret in (value for triple in stored_credentials().values() for value in triple):
        assert secret not in to_kite
    assert "moved from paper" in to_kite
    assert "staff user exists" in to_kite

    # Idempotent: a second run keeps the live credentials and rewrites the same file.
    before = stored_credentials()
    again = seed("--kite-sim", str(config))
    assert stored_credentials() == before
    assert Account.objects.count() == 6
    assert_config_matches_accounts(config)
    assert len(re.findall(r"^[A-Z0-9]+ +kite .* exists$", again, re.MULTILINE)) == 6

    # Plain `make run` afterwards: paper again, credentials gone, same rows.
    back = seed()
    accounts = demo_accounts()
    assert {user_id: a.pk for user_id, a in accounts.items()} == paper_ids
    assert all(a.broker == Broker.PAPER and a.status == AccountStatus.ACTIVE for a in accounts.values())
    assert all(
        (a.api_key, a.api_secret, a.access_token, a.token_expires_at) == ("", "", "", None)
        for a in accounts.values()
    )
    assert "moved from kite" in back
    switches = ReplicationEvent.objects.filter(kind="account.broker_switched")
    assert switches.count() == 12  # six accounts, there and back

    # And onto Kite once more: fresh credentials (the old ones were forgotten).
    seed("--kite-sim", str(config))
    assert Account.objects.count() == 6
    assert all(stored_credentials()[user_id][2] != before[user_id][2] for user_id in DEMO_IDS)
    assert_config_matches_accounts(config)


@pytest.mark.django_db
def test_seed_demo_kite_sim_replaces_expired_or_refused_tokens_only(tmp_path):
    config = tmp_path / "sim.json"
    seed("--kite-sim", str(config))
    before = stored_credentials()
    Account.objects.filter(broker_user_id="CHILD1").update(
        token_expires_at=timezone.now() - timedelta(hours=1)
    )
    Account.objects.filter(broker_user_id="CHILD2").update(status=AccountStatus.NEEDS_LOGIN)
    Account.objects.filter(broker_user_id="CHILD3").update(status=AccountStatus.PAUSED)

    seed("--kite-sim", str(config))

    after = stored_credentials()
    renewed = sorted(user_id for user_id in DEMO_IDS if after[user_id][2] != before[user_id][2])
    assert renewed == ["CHILD1", "CHILD2"]
    assert all(after[u][:2] == before[u][:2] for u in DEMO_IDS)  # keys and secrets kept
    statuses = dict(Account.objects.values_list("broker_user_id", "status"))
    assert statuses["CHILD2"] == AccountStatus.ACTIVE
    assert statuses["CHILD3"] == AccountStatus.PAUSED  # staff's choice is left alone
    assert_config_matches_accounts(config)


@pytest.mark.django_db
def test_seed_demo_kite_sim_from_scratch_creates_kite_accounts(tmp_path):
    config = tmp_path / "sim.json"
    config.write_text("stale")
    config.chmod(0o644)

    output = seed("--kite-sim", str(config))

    accounts = demo_accounts()
    assert sorted(accounts) == DEMO_IDS
    assert all(a.broker == Broker.KITE and a.status == AccountStatus.ACTIVE for a in accounts.values())
    assert len(re.findall(r"^[A-Z0-9]+ +kite .* created$", output, re.MULTILINE)) == 6
    assert_config_matches_accounts(config)  # replaced, and no longer world-readable
    assert [p.name for p in tmp_path.iterdir()] == ["sim.json"]  # no temporary file left


# --- end to end: the config drives a real simulator, the engine replicates through it ----------


@pytest.fixture
def kite_demo(tmp_path) -> Iterator[RunningSim]:
    """`seed_demo --kite-sim`, instruments, and `kite_sim` serving the config it wrote."""
    config = tmp_path / ".kite-sim.json"
    seed("--kite-sim", str(config))
    paper_instruments_seed()
    running = run_kite_sim(host="127.0.0.1", port=0, config=read_config(config))
    shared_cache(running.root).clear()
    try:
        yield running
    finally:
        running.stop()
        shared_cache(running.root).clear()


def nifty_future() -> str:
    futures = [
        i for i in paper_instrument_list(underlying="NIFTY") if i.instrument_type == InstrumentType.FUT
    ]
    return futures[0].tradingsymbol


@pytest.mark.django_db(transaction=True)
def test_seed_demo_kite_sim_config_serves_the_engine_end_to_end(kite_demo):
    symbol = nifty_future()
    with kite_settings(kite_demo.root):
        orch = Orchestrator(holder="seed-demo-kite", workers=0)
        try:
            orch.run_tick()
            paper_order_place(
                user_id="MASTER1",
                exchange="NFO",
                tradingsymbol=symbol,
                side="BUY",
                quantity=150,  # 2 lots of 75
                product="NRML",
                order_type="MARKET",
            )
            orch.run_tick()
            orch.run_tick()
        finally:
            orch.close()

    sim = kite_demo.sim
    assert sim.hit_count(user_id="MASTER1", route="GET /orders", status=200) >= 3
    expected = {"CHILD1": 75, "CHILD2": 300, "CHILD4": 75, "CHILD5": 75}  # DESIGN §3.6; CHILD3 below one lot
    for user_id, quantity in expected.items():
        mapping = OrderMapping.objects.get(child__broker_user_id=user_id, quantity__gt=0)
        order = PaperOrder.objects.get(account__user_id=user_id)
        assert (order.tag, order.quantity, order.status) == (mapping.tag, quantity, "COMPLETE"), user_id
        assert order.order_id == mapping.broker_order_id
        assert sim.hit_count(user_id=user_id, route=PLACE, status=200) == 1, user_id
    assert not PaperOrder.objects.filter(account__user_id="CHILD3").exists()
    assert sim.hit_count(user_id="CHILD3", route=PLACE) == 0
