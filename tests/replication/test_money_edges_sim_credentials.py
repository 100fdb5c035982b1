"""Issue 11 defect 14: credentials issued for the Kite simulator never leave for another host,
whatever the environment of the command (KITE_API_ROOT unset = the real Kite)."""

from __future__ import annotations

import io
import socket

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from accounts.management.commands.seed_demo import seed_demo
from accounts.models import Account, Broker
from brokers.errors import BrokerError
from brokers.kite import session as kite_session
from brokers.kite.client import KiteBroker
from brokers.kite.instruments import InstrumentCache
from brokers.registry import BrokerCredentials, build_client
from tests.api_helpers import seed_allocation

pytestmark = pytest.mark.django_db

REAL_ROOT = "https://api.kite.trade"


class Wire:
    """Every connection the process tries to make, refused (there is no network here anyway).
    Caught at name resolution (`socket.getaddrinfo`), which every HTTP path goes through before
    connecting (the SDK's requests and urllib3 path, the egress's own connections, a proxy)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.urls: list[str] = []

        def getaddrinfo(host, port, *args, **kwargs):
            self.urls.append(f"http://{host}:{port}")
            raise socket.gaierror(socket.EAI_NONAME, f"test: no network for {host}")

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    @property
    def off_machine(self) -> list[str]:
        loopback = ("http://127.0.0.1", "http://localhost", "https://127.0.0.1", "https://localhost")
        return [url for url in self.urls if not url.startswith(loopback)]


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    return Wire(monkeypatch)


@pytest.fixture
def sim_seeded() -> dict[str, Account]:
    """The demo desk as `make run KITE=sim` seeds it: Kite accounts with the simulator's credentials."""
    seed_demo(broker=Broker.KITE)
    return {a.broker_user_id: a for a in Account.objects.filter(broker=Broker.KITE)}


@override_settings(KITE_API_ROOT=REAL_ROOT)
def test_money_edges_master_positions_with_sim_credentials_sends_nothing_off_machine(wire, sim_seeded):
    """Issue 11 defect 14: `manage.py master_positions` from a terminal without KITE_API_ROOT, with
    the master seeded for the simulator: no request leaves for api.kite.trade; a clear error says why."""
    with pytest.raises(CommandError, match="simulator") as failed:
        call_command("master_positions", stdout=io.StringIO())

    assert wire.off_machine == []
    assert "127.0.0.1" in str(failed.value) or "KITE_API_ROOT" in str(failed.value)


@override_settings(KITE_API_ROOT=REAL_ROOT)
def test_money_edges_reconcile_with_sim_credentials_sends_nothing_off_machine(wire, sim_seeded):
    """Issue 11 defect 14: `manage.py reconcile` reading a sim-seeded child's positions against the
    real root sends no request anywhere; the child is reported unreadable instead."""
    seed_allocation(sim_seeded["MASTER1"], sim_seeded["CHILD2"], filled=75)
    out = io.StringIO()

    with pytest.raises(SystemExit):
        call_command("reconcile", stdout=out)

    assert wire.off_machine == []
    assert "CHILD2" in out.getvalue()


@override_settings(KITE_API_ROOT=REAL_ROOT)
def test_money_edges_kite_adapter_refuses_sim_credentials_for_any_non_loopback_root(wire, sim_seeded):
    """Issue 11 defect 14: every adapter call (reads and writes) with the simulator's credentials
    is refused with a BrokerError before any request, for the real root and any other host."""
    child = sim_seeded["CHILD1"]
    creds = BrokerCredentials(
        broker="kite",
        user_id=child.broker_user_id,
        api_key=child.secret("api_key"),
        access_token=child.secret("access_token"),
    )
    clients = [
        build_client(creds),
        KiteBroker(
            api_key=creds.api_key,
            access_token=creds.access_token,
            root="https://kite.example.net",
            instrument_cache=InstrumentCache(),
        ),
    ]
    for client in clients:
        for call in (client.funds, client.positions, client.orders, client.instruments):
            with pytest.raises(BrokerError) as refused:
                call()
            assert refused.value.code == "simulator_credentials"
            assert refused.value.permanent
        with pytest.raises(BrokerError):
            client.cancel_order("250101000000001")
    with pytest.raises(BrokerError) as login:
        kite_session.exchange_request_token(
            api_key=creds.api_key, api_secret="x" * 32, request_token="r" * 32, root=REAL_ROOT
        )
    assert login.value.code == "simulator_credentials"
    assert wire.urls == []


def test_money_edges_sim_credentials_still_reach_the_simulator_on_loopback(wire, sim_seeded):
    """Issue 11 defect 14: on the simulator's loopback root the same credentials are sent (the
    guard refuses other hosts only), and never through a proxy from the environment."""
    child = sim_seeded["CHILD1"]
    client = KiteBroker(
        api_key=child.secret("api_key"),
        access_token=child.secret("access_token"),
        root="http://127.0.0.1:8001",
        instrument_cache=InstrumentCache(),
        max_read_attempts=1,
    )

    with pytest.raises(BrokerError) as unreachable:
        client.funds()

    assert unreachable.value.code != "simulator_credentials"
    assert wire.urls and wire.off_machine == []
