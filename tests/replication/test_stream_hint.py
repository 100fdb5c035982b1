"""A streamed master order (a wake's *hint*) is asked of the margin calculator with the master's
funds and book, one round trip earlier, and never changes what is decided (issue 17 item 5).

The rules: a hint only saves a round trip. What the children get is what they get without it;
a hint that does not match the book, that is already known, or whose read failed is asked again
(or not at all) exactly as without a hint; a hint never fails a tick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from django.test import override_settings

from brokers.errors import BrokerUnavailable
from brokers.paper.client import PaperBroker
from brokers.types import Order
from lab.demo import MASTER
from replication import wakeup
from replication.models import Allocation, MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from replication.wakeup import order_from_json, order_to_json, take_hints, wake, wake_remote
from tests.engine_helpers import FUT, build_desk
from tests.faulty_broker import Faults, FaultyBroker, install

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
# The worked example (DESIGN §3.6): the master buys 2 lots of the future.
EXPECTED = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}


@dataclass
class Calls:
    """The master's broker calls, in the order they started."""

    log: list[str] = field(default_factory=list)
    fail_calculator_once: bool = False
    asked: threading.Event = field(default_factory=threading.Event)  # the calculator was called
    book_waits_for_calculator: float = 0.0  # seconds orders() waits for the calculator to be asked
    book_saw_calculator: list[bool] = field(default_factory=list)


class RecordingBroker(FaultyBroker):
    calls: Calls

    def _record(self, name: str) -> None:
        if self.user_id == MASTER:
            self.calls.log.append(name)

    def orders(self):  # type: ignore[no-untyped-def]
        self._record("orders")
        if self.user_id == MASTER and self.calls.book_waits_for_calculator:
            self.calls.book_saw_calculator.append(self.calls.asked.wait(self.calls.book_waits_for_calculator))
        return super().orders()

    def positions(self):  # type: ignore[no-untyped-def]
        self._record("positions")
        return super().positions()

    def order_margins(self, reqs):  # type: ignore[no-untyped-def]
        self._record("order_margins")
        if self.user_id == MASTER:
            self.calls.asked.set()
            if self.calls.fail_calculator_once:
                self.calls.fail_calculator_once = False
                raise BrokerUnavailable("calculator unreachable")
        return super().order_margins(reqs)


@pytest.fixture(autouse=True)
def no_stale_hints() -> Iterator[None]:
    take_hints()
    yield
    take_hints()


@pytest.fixture
def calls() -> Iterator[Calls]:
    recorded = Calls()
    restore = install(Faults(), broker_class=RecordingBroker, calls=recorded)
    yield recorded
    restore()


def streamed(order_id: str) -> Order:
    """The master's order as its order stream delivers it (the same parser as its book)."""
    return next(o for o in PaperBroker(MASTER).orders() if o.order_id == order_id)


def positions(desk) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return desk.positions(FUT)


def test_a_streamed_order_is_sized_as_a_polled_one_with_the_calculator_asked_once(calls):
    desk, orch = build_desk(), Orchestrator(holder="hint", workers=0)
    try:
        orch.run_tick()
        calls.log.clear()
        wake(streamed(desk.place("BUY", FUT, 150)))
        result = orch.run_tick()
    finally:
        orch.close()
    assert result.errors == []
    assert positions(desk) == EXPECTED
    assert calls.log.count("order_margins") == 1
    assert OrderMapping.objects.filter(status=MappingStatus.OPEN).count() == 4


@pytest.mark.django_db(transaction=True)
def test_the_calculator_is_asked_while_the_book_is_read(calls):
    """The point of the hint: the calculator's round trip overlaps the book's. The master's book
    read here waits until the calculator has been asked (or 2 s): it is, with the hint."""
    desk, orch = build_desk(), Orchestrator(holder="hint", workers=4)
    try:
        orch.run_tick()
        calls.book_waits_for_calculator = 2.0
        wake(streamed(desk.place("BUY", FUT, 150)))
        result = orch.run_tick()
    finally:
        orch.close()
    assert result.errors == []
    assert calls.book_saw_calculator == [True]
    assert positions(desk) == EXPECTED


def test_a_hint_that_does_not_match_the_book_is_asked_again_and_the_book_decides(calls):
    desk, orch = build_desk(), Orchestrator(holder="hint", workers=0)
    try:
        orch.run_tick()
        calls.log.clear()
        order = streamed(desk.place("BUY", FUT, 150))
        wake(replace(order, quantity=75))  # the stream's copy says 1 lot, the book says 2
        result = orch.run_tick()
    finally:
        orch.close()
    assert result.errors == []
    assert calls.log.count("order_margins") == 2  # the hint's, then the book's own
    assert positions(desk) == EXPECTED
    assert Allocation.objects.get().master_quantity == 150


def test_a_hint_for_a_known_order_asks_nothing(calls):
    desk, orch = build_desk(), Orchestrator(holder="hint", workers=0)
    try:
        orch.run_tick()
        order = streamed(desk.place("BUY", FUT, 150))
        orch.run_tick()
        calls.log.clear()
        wake(order)  # the same update again (a reconnect replays it)
        result = orch.run_tick()
    finally:
        orch.close()
    assert result.errors == []
    assert "order_margins" not in calls.log
    assert positions(desk) == EXPECTED


def test_a_hinted_read_that_failed_is_asked_again_after_the_book(calls):
    desk, orch = build_desk(), Orchestrator(holder="hint", workers=0)
    try:
        orch.run_tick()
        calls.log.clear()
        calls.fail_calculator_once = True
        wake(streamed(desk.place("BUY", FUT, 150)))
        result = orch.run_tick()
    finally:
        orch.close()
    assert result.errors == []
    assert calls.log.count("order_margins") == 2
    assert positions(desk) == EXPECTED


def test_a_hint_whose_read_raises_anything_never_fails_the_tick(calls, monkeypatch):
    desk, orch = build_desk(), Orchestrator(holder="hint", workers=0)
    real_ltp = RecordingBroker.ltp
    raised: list[str] = []

    def ltp_broken_once(self, keys):  # type: ignore[no-untyped-def]
        if not raised:
            raised.append("KeyError")
            raise KeyError("no such instrument")  # something no broker error is
        return real_ltp(self, keys)

    try:
        orch.run_tick()
        order = streamed(desk.place("BUY", FUT, 150))
        # A MARKET hint asks the LTP too: the hinted read blows up, the book's read does not.
        monkeypatch.setattr(RecordingBroker, "ltp", ltp_broken_once)
        wake(order)
        result = orch.run_tick()
    finally:
        orch.close()
    assert raised == ["KeyError"]
    assert result.errors == []
    assert positions(desk) == EXPECTED


# --- the wake file carries the order to another process ------------------------------------------


def test_an_order_survives_the_wake_files_json(calls):
    desk = build_desk()
    order = streamed(desk.place("BUY", FUT, 150))
    assert order_from_json(json.loads(json.dumps(order_to_json(order)))) == order


def test_wake_remote_hands_the_order_to_the_loop_in_another_process(tmp_path, calls):
    desk = build_desk()
    order = streamed(desk.place("BUY", FUT, 150))
    path = tmp_path / "engine-wake"
    with override_settings(WAKE_FILE=str(path)):
        wakeup._remote_woken()  # the loop's first look at the file
        code = (
            f"import django, os, sys, json; sys.path.insert(0, {str(REPO)!r}); "
            "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'pms.settings'); django.setup(); "
            "from replication.wakeup import wake_remote, order_from_json; "
            "print(wake_remote(order_from_json(json.loads(sys.stdin.read()))))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(order_to_json(order)),
            capture_output=True,
            text=True,
            env={**os.environ, "WAKE_FILE": str(path)},
            timeout=60,
            check=False,
        )
        assert done.stdout.strip() == "True", done.stderr
        wakeup.wait_for_wakeup(stop=threading.Event(), timeout=5.0)
    assert take_hints() == (order,)


def test_a_wake_file_without_readable_orders_still_wakes_and_hints_nothing(tmp_path):
    path = tmp_path / "engine-wake"
    with override_settings(WAKE_FILE=str(path)):
        wakeup._remote_woken()
        path.write_text('[{"order_id": "1"}]')  # not an order
        assert wakeup._remote_woken() is True
        assert take_hints() == ()
        wake_remote()  # a plain wake only stamps the file
        assert wakeup._remote_woken() is True
        assert take_hints() == ()


def test_take_hints_hands_each_order_once_and_the_latest_update_of_it(calls):
    desk = build_desk()
    order = streamed(desk.place("BUY", FUT, 150))
    wake(replace(order, filled_quantity=0))
    wake(order)
    assert take_hints() == (order,)
    assert take_hints() == ()


def test_a_stale_hint_is_dropped(calls, monkeypatch):
    desk = build_desk()
    order = streamed(desk.place("BUY", FUT, 150))
    wake(order)
    now = wakeup.time.monotonic()
    monkeypatch.setattr(wakeup.time, "monotonic", lambda: now + wakeup.HINT_MAX_AGE_S + 1)
    assert take_hints() == ()
