"""master_stream: order updates wake the orchestrator; the cross-process wake-up channel."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from accounts.models import Account, AccountStatus, Broker
from accounts.services import account_set_credentials
from brokers.kite.stream import OrderUpdateStream
from brokers.types import Order
from replication import wakeup
from replication.management.commands.master_stream import (
    MasterStreamSupervisor,
    on_master_order,
    run_master_stream,
)
from replication.wakeup import wait_for_wakeup, wake, wake_remote
from tests.factories import MasterAccountFactory
from tests.kite_http import fixture_json

REPO = Path(__file__).resolve().parents[2]
FRAME = fixture_json("handmade/ws_order_update_frame.json")


@pytest.fixture
def wake_file(tmp_path):
    path = tmp_path / "engine-wake"
    with override_settings(WAKE_FILE=str(path)):
        yield path


def waited(timeout: float) -> float:
    """Seconds one wait_for_wakeup(timeout) took."""
    start = time.monotonic()
    wait_for_wakeup(stop=threading.Event(), timeout=timeout)
    return time.monotonic() - start


def prime() -> None:
    """Let the waiter record the wake file's current stamp (its first look never wakes)."""
    waited(0.01)


# --- the order-update callback ----------------------------------------------------------------


def test_order_update_frame_for_the_master_wakes_the_orchestrator(wake_file):
    seen: list[Order] = []

    def on_order(order: Order) -> None:
        seen.append(order)
        on_master_order(order)

    stream = OrderUpdateStream(api_key="k", access_token="t", on_order=on_order, user_id="ab1234")
    prime()
    stream.handle_order_update(None, FRAME["data"])  # what KiteTicker passes for a {"type": "order"} frame
    assert [o.order_id for o in seen] == ["220303000308932"]
    assert wake_file.exists()
    assert waited(5.0) < 1.0


def test_order_update_of_another_user_is_dropped(wake_file):
    stream = OrderUpdateStream(api_key="k", access_token="t", on_order=on_master_order, user_id="ZZ9999")
    prime()
    stream.handle_order_update(None, FRAME["data"])
    assert stream.updates == 0
    assert not wake_file.exists()


@pytest.mark.parametrize("data", [{}, {"user_id": "AB1234"}, {**FRAME["data"], "quantity": "ten"}])
def test_malformed_order_update_is_dropped_without_raising(wake_file, data):
    stream = OrderUpdateStream(api_key="k", access_token="t", on_order=on_master_order, user_id="AB1234")
    stream.handle_order_update(None, data)
    assert stream.updates == 0
    assert not wake_file.exists()


def test_stream_repr_hides_the_token():
    stream = OrderUpdateStream(api_key="k", access_token="secrettoken123", on_order=on_master_order)
    assert "secrettoken123" not in repr(stream)


# --- the supervisor (no network: a fake stream) ------------------------------------------------


class FakeStream:
    instances: list[FakeStream] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.started = False
        self.stopped = False
        self.gave_up = threading.Event()
        FakeStream.instances.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def fakes():
    FakeStream.instances = []
    return FakeStream.instances


def make_master() -> Account:
    return MasterAccountFactory(
        broker=Broker.KITE,
        broker_user_id="AB1234",
        api_key="masterapikey1",
        api_secret="mastersecret123",
        access_token="mastertoken0001",
        token_expires_at=datetime.now(UTC) + timedelta(hours=5),
    )


@pytest.fixture
def master(db) -> Account:
    return make_master()


@override_settings(KITE_WS_ROOT="ws://127.0.0.1:8765")
def test_supervisor_opens_one_stream_on_the_masters_session(master, fakes):
    lines: list[str] = []
    supervisor = MasterStreamSupervisor(write=lines.append, stream_factory=FakeStream)
    supervisor.step()
    supervisor.step()
    assert len(fakes) == 1
    assert fakes[0].started
    assert fakes[0].kwargs["api_key"] == "masterapikey1"
    assert fakes[0].kwargs["access_token"] == "mastertoken0001"
    assert fakes[0].kwargs["root"] == "ws://127.0.0.1:8765"
    assert fakes[0].kwargs["user_id"] == "AB1234"
    assert fakes[0].kwargs["on_order"] is on_master_order
    assert not any("mastertoken0001" in line for line in lines)


def test_supervisor_follows_the_daily_login(master, fakes):
    supervisor = MasterStreamSupervisor(write=lambda line: None, stream_factory=FakeStream)
    supervisor.step()
    account_set_credentials(account=master, actor="test", access_token="mastertoken0002")
    supervisor.step()
    assert [f.kwargs["access_token"] for f in fakes] == ["mastertoken0001", "mastertoken0002"]
    assert fakes[0].stopped and not fakes[1].stopped


def test_supervisor_closes_the_stream_when_the_session_expires_and_waits(master, fakes):
    lines: list[str] = []
    supervisor = MasterStreamSupervisor(write=lines.append, stream_factory=FakeStream)
    supervisor.step()
    Account.objects.filter(pk=master.pk).update(token_expires_at=datetime.now(UTC) - timedelta(minutes=1))
    supervisor.step()
    supervisor.step()
    assert fakes[0].stopped and len(fakes) == 1
    assert sum("waiting for its daily login" in line for line in lines) == 1


def test_supervisor_replaces_a_stream_that_gave_up(master, fakes):
    supervisor = MasterStreamSupervisor(write=lambda line: None, stream_factory=FakeStream)
    supervisor.step()
    fakes[0].gave_up.set()
    supervisor.step()
    assert len(fakes) == 2 and fakes[0].stopped


@pytest.mark.django_db
def test_supervisor_does_nothing_for_a_paper_master(fakes):
    MasterAccountFactory(broker=Broker.PAPER)
    lines: list[str] = []
    MasterStreamSupervisor(write=lines.append, stream_factory=FakeStream).step()
    assert fakes == []
    assert "is on paper: no order stream, polled only" in lines[0]


@pytest.mark.django_db
def test_supervisor_waits_for_a_master(fakes):
    lines: list[str] = []
    MasterStreamSupervisor(write=lines.append, stream_factory=FakeStream).step()
    assert fakes == [] and lines == ["no master account is linked"]


def test_run_master_stream_closes_its_stream_on_stop(transactional_db, fakes):
    make_master()  # committed: the loop closes and reopens its connection each round
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    opened = run_master_stream(
        stop=stop, check_every=0.05, write=lambda line: None, stream_factory=FakeStream
    )
    timer.join()
    assert opened == 1
    assert fakes[0].stopped


def test_kite_account_status_does_not_matter_to_the_stream_only_the_token(master, fakes):
    Account.objects.filter(pk=master.pk).update(status=AccountStatus.PAUSED)
    MasterStreamSupervisor(write=lambda line: None, stream_factory=FakeStream).step()
    assert len(fakes) == 1


# --- the wake-up channel -------------------------------------------------------------------------


def test_wait_for_wakeup_returns_early_on_wake_remote_from_another_thread(wake_file):
    prime()
    timer = threading.Timer(0.2, wake_remote)
    timer.start()
    elapsed = waited(5.0)
    timer.join()
    assert 0.15 < elapsed < 1.5


def test_wait_for_wakeup_sleeps_the_full_timeout_without_a_wake(wake_file):
    wake_remote()
    prime()  # a stamp already seen wakes nobody
    assert waited(0.3) >= 0.3


def test_wake_remote_while_the_loop_is_busy_ends_the_next_wait_at_once(wake_file):
    prime()
    wake_remote()  # arrives between two waits
    assert waited(5.0) < 0.5
    assert waited(0.2) >= 0.2  # and only once


def test_wait_for_wakeup_still_wakes_in_process(wake_file):
    prime()
    threading.Timer(0.1, wake).start()
    assert waited(5.0) < 1.0


def test_wake_remote_reports_an_unwritable_wake_file(tmp_path):
    with override_settings(WAKE_FILE=str(tmp_path / "missing-dir" / "wake")):
        assert wake_remote() is False


def test_wake_file_defaults_to_the_project_directory(settings):
    # The default is declared in pms/settings.py only; an empty WAKE_FILE (as `WAKE_FILE=` in the
    # environment gives) means that default too.
    assert str(Path(settings.BASE_DIR) / ".engine-wake") == settings.WAKE_FILE
    settings.WAKE_FILE = ""
    assert wakeup.wake_file() == Path(settings.BASE_DIR) / ".engine-wake"


def test_wake_remote_from_another_process_wakes_the_loop(wake_file):
    prime()
    code = (
        "import django, sys; django.setup(); "
        "from django.conf import settings; settings.WAKE_FILE = sys.argv[1]; "
        "from replication.wakeup import wake_remote; sys.exit(0 if wake_remote() else 1)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test"}
    child = subprocess.Popen([sys.executable, "-c", code, str(wake_file)], cwd=REPO, env=env)
    try:
        elapsed = waited(30.0)
    finally:
        assert child.wait(timeout=30) == 0
    assert elapsed < 29.0


class RefusingStream(FakeStream):
    def start(self) -> None:
        from brokers.errors import BrokerError

        raise BrokerError(
            "simulator credentials are never sent off this machine", code="simulator_credentials"
        )


def test_supervisor_reports_a_refused_stream_once_without_crashing(master, fakes):
    """A stream the adapter refuses to open (simulator credentials against a real root, issue 11
    defect 14) is reported in one line and tried again on the next step; the command never dies."""
    lines: list[str] = []
    supervisor = MasterStreamSupervisor(write=lines.append, stream_factory=RefusingStream)
    supervisor.step()
    supervisor.step()
    assert supervisor.stream is None
    assert lines == ["order stream not opened: simulator credentials are never sent off this machine"]


# --- against the simulator's order-update WebSocket on a real socket ---------------------------


@pytest.mark.django_db(transaction=True)
def test_master_stream_on_kite_sim_wakes_the_engine_when_the_master_places_an_order(wake_file):
    """`master_stream` (supervisor, OrderUpdateStream, KiteTicker) connects to kite_sim's WebSocket on
    127.0.0.1; the master's order placed through the simulator wakes the orchestrator's wait at once,
    and the tick it runs replicates the order (polling stays the truth)."""
    from brokers.kite.client import KiteBroker
    from brokers.types import OrderRequest, OrderType, Product, Side
    from lab.demo import FUT, build_desk
    from replication.models import OrderMapping
    from replication.orchestrator import Orchestrator
    from tests.kite_sim_helpers import move_desk_to_kite, running_sim

    with running_sim() as running:
        kdesk = move_desk_to_kite(build_desk(), running)
        master_id = kdesk.desk.master.broker_user_id
        stop = threading.Event()
        lines: list[str] = []
        with override_settings(KITE_WS_ROOT=running.ws_root, KITE_API_ROOT=running.root):
            orch = Orchestrator(holder="stream-test", workers=4)
            try:
                orch.run_tick()  # the master's book as it is: nothing to replicate
                loop = threading.Thread(
                    target=run_master_stream,
                    kwargs={"stop": stop, "check_every": 0.2, "write": lines.append},
                    daemon=True,
                )
                loop.start()
                deadline = time.monotonic() + 15
                while running.sim.feed.listeners(master_id) == 0:
                    assert time.monotonic() < deadline, f"the stream never connected: {lines}"
                    time.sleep(0.05)
                prime()
                session = kdesk.sessions[master_id]
                master = KiteBroker(
                    api_key=session.api_key, access_token=session.access_token, root=running.root
                )
                master.place_order(
                    OrderRequest(
                        exchange="NFO",
                        tradingsymbol=FUT,
                        side=Side.BUY,
                        quantity=150,
                        product=Product.NRML,
                        order_type=OrderType.MARKET,
                        tag="byhand1",
                    )
                )
                assert waited(5.0) < 1.0  # woken by the stream, not by the 5 s poll
                assert running.sim.feed.published >= 1
                orch.run_tick()
                assert OrderMapping.objects.filter(quantity__gt=0).exists()
            finally:
                stop.set()
                loop.join(timeout=10)
                orch.close()
    assert any("order stream for master" in line and "opened" in line for line in lines)


def _test_database_url(connection: Any) -> str:
    """The URL of the test database this test runs on (a SQLite file or PostgreSQL), for a child
    process."""
    from urllib.parse import quote

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    auth = quote(settings["USER"] or "")
    if settings.get("PASSWORD"):
        auth += ":" + quote(settings["PASSWORD"])
    return f"postgres://{auth}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_master_stream_command_process_on_kite_sim_wakes_the_orchestrator(wake_file):
    """`manage.py master_stream` as its own process, on the test database, against kite_sim's
    WebSocket: the master's order placed through the simulator touches the wake file at once;
    SIGTERM stops it cleanly."""
    import signal

    from django.db import connection

    from brokers.kite.client import KiteBroker
    from brokers.types import OrderRequest, OrderType, Product, Side
    from lab.demo import FUT, build_desk
    from tests.kite_sim_helpers import move_desk_to_kite, running_sim

    with running_sim() as running:
        kdesk = move_desk_to_kite(build_desk(), running)
        master_id = kdesk.desk.master.broker_user_id
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pms.settings_test",
            "DATABASE_URL": _test_database_url(connection),
            "KITE_WS_ROOT": running.ws_root,
            "WAKE_FILE": str(wake_file),
            "PYTHONUNBUFFERED": "1",
        }
        child = subprocess.Popen(
            [sys.executable, "manage.py", "master_stream", "--check-every", "0.5"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while running.sim.feed.listeners(master_id) == 0:
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the command's stream never connected"
                time.sleep(0.05)
            prime()
            session = kdesk.sessions[master_id]
            KiteBroker(
                api_key=session.api_key, access_token=session.access_token, root=running.root
            ).place_order(
                OrderRequest(
                    exchange="NFO",
                    tradingsymbol=FUT,
                    side=Side.BUY,
                    quantity=75,
                    product=Product.NRML,
                    order_type=OrderType.MARKET,
                    tag="byhand2",
                )
            )
            assert waited(5.0) < 1.0
        finally:
            child.send_signal(signal.SIGTERM)
            out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert f"order stream for master {master_id} opened ({running.ws_root})" in out
