"""master_stream for a Dhan or Alice Blue master (issue 16): the supervisor opens that broker's
order stream on the master's session, over a real socket to the broker's simulator, and an order
the master places elsewhere (the web or mobile app: straight into the paper book) wakes the
orchestrator. Polling stays the truth; this only shortens the wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.test import override_settings

from brokers.paper.services import paper_order_place
from lab.alice_demo import move_to_alice
from lab.dhan_demo import move_to_dhan
from replication.management.commands.master_stream import MasterStreamSupervisor
from replication.wakeup import wait_for_wakeup
from tests.alice_helpers import running_alice_sim
from tests.dhan_helpers import running_dhan_sim
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db(transaction=True)


def _until(check: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def _master_trades_elsewhere_and_the_loop_wakes(supervisor: MasterStreamSupervisor) -> None:
    stream = supervisor.stream
    assert stream is not None
    assert _until(lambda: bool(getattr(stream, "connected", threading.Event()).is_set()))
    stop = threading.Event()
    wait_for_wakeup(stop=stop, timeout=0.1)  # the waiter records the wake file's first stamp
    paper_order_place(
        user_id="MASTER", exchange="NFO", tradingsymbol=FUT, side="BUY", quantity=75,
        product="NRML", order_type="MARKET",
    )  # fmt: skip
    started = time.monotonic()
    wait_for_wakeup(stop=stop, timeout=4.0)
    assert time.monotonic() - started < 3.0, "the master's order did not wake the orchestrator"


def test_a_dhan_master_s_order_updates_wake_the_orchestrator(tmp_path):
    desk = build_desk()
    lines: list[str] = []
    with running_dhan_sim() as running, override_settings(WAKE_FILE=str(tmp_path / "wake")):
        move_to_dhan(desk.master, running.sim, store_login=False)  # a linked 24-hour token
        supervisor = MasterStreamSupervisor(write=lines.append)
        try:
            supervisor.step()
            assert lines == [f"order stream for master MASTER opened ({running.ws_root})"]
            _master_trades_elsewhere_and_the_loop_wakes(supervisor)
        finally:
            supervisor.close()
    assert lines[-1] == "order stream closed: shutting down"


def test_an_alice_blue_master_s_order_feed_wakes_the_orchestrator(tmp_path):
    desk = build_desk()
    lines: list[str] = []
    for running in running_alice_sim():
        with override_settings(WAKE_FILE=str(tmp_path / "wake"), ALICE_WS_URL=running.ws_root):
            move_to_alice(desk.master, running.sim)
            supervisor = MasterStreamSupervisor(write=lines.append)
            try:
                supervisor.step()
                assert lines == [f"order stream for master MASTER opened ({running.ws_root})"]
                _master_trades_elsewhere_and_the_loop_wakes(supervisor)
            finally:
                supervisor.close()
    assert lines[-1] == "order stream closed: shutting down"


def test_an_angel_master_is_polled_only(tmp_path):
    """Angel One's order-update socket is not streamed yet: the supervisor says so and waits."""
    from accounts.models import Account, Broker

    build_desk()
    Account.objects.filter(broker_user_id="MASTER").update(broker=Broker.ANGEL)
    lines: list[str] = []
    supervisor = MasterStreamSupervisor(write=lines.append)
    supervisor.step()
    assert supervisor.stream is None
    assert lines == ["the master MASTER is on Angel One: no order stream, polled only"]
