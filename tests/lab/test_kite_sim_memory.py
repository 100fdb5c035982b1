"""kite_sim's bench mode (lab.kite_sim.fast): order writes answered from memory on an event loop,
everything else through the simulator and the paper exchange."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from brokers.errors import InputRejected, RateLimited
from brokers.kite.client import KiteBroker
from brokers.paper.models import PaperOrder
from brokers.types import OrderRequest, OrderType, Product, Side
from lab.demo import FUT, build_desk
from lab.kite_sim.fast import MemoryBook, MemoryFront, stats
from lab.kite_sim.server import KiteSim
from tests.kite_sim_helpers import move_desk_to_kite, running_sim

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def buy(tag: str, quantity: int = 75) -> OrderRequest:
    return OrderRequest(
        exchange="NFO",
        tradingsymbol=FUT,
        side=Side.BUY,
        quantity=quantity,
        product=Product.NRML,
        order_type=OrderType.MARKET,
        tag=tag,
    )


def test_memory_front_answers_children_from_memory_and_the_master_from_the_paper_exchange():
    sim = KiteSim()
    with running_sim(sim) as running:  # the desk's sessions live in `sim`, which both servers share
        kdesk = move_desk_to_kite(build_desk(), running)
    front = MemoryFront(sim, MemoryBook(persist=frozenset({"MASTER"}))).start()
    try:
        sim.set_faults(latency_ms=50)

        def broker(user_id: str) -> KiteBroker:
            s = kdesk.sessions[user_id]
            return KiteBroker(
                api_key=s.api_key, access_token=s.access_token, root=front.root, user_id=user_id
            )

        children = ["C1", "C2", "C3", "C4", "C5"]
        started = time.perf_counter()
        with ThreadPoolExecutor(5) as pool:
            ids = list(pool.map(lambda u: broker(u).place_order(buy(f"t{u}")), children))
        elapsed = time.perf_counter() - started
        master_id = broker("MASTER").place_order(buy("byhand1"))

        assert len(set(ids)) == 5
        assert 0.05 <= elapsed < 1.0  # the latency is a timer on the loop: five at once, not in a row
        assert not PaperOrder.objects.filter(account__user_id__in=children).exists()
        assert PaperOrder.objects.get(account__user_id="MASTER").order_id == master_id
        assert [o.tag for o in broker("C1").orders()] == ["tC1"]  # looked up by tag from memory
        assert broker("MASTER").positions()  # reads go to the paper exchange
        figures = stats(front.root)
        assert figures["orders"] == dict.fromkeys(children, 1)
        assert figures["from_memory"] == 6 and figures["cpu_s"] > 0
        with pytest.raises(InputRejected):
            broker("C2").place_order(buy("t0", quantity=0))
        sim.set_faults(user_id="C3", rate_limit={"count": 1})
        with pytest.raises(RateLimited):
            broker("C3").place_order(buy("again"))
        assert stats(front.root)["orders"]["C3"] == 1
        wrong = requests.post(
            front.root + "/orders/regular", headers={"Authorization": "token a:b"}, timeout=5
        )
        assert wrong.status_code == 403
    finally:
        front.stop()


def test_memory_front_answers_a_read_the_latency_after_it_arrived_its_own_work_inside_it(monkeypatch):
    """The latency is the round trip the bench asks for: a read through the paper exchange is
    answered that long after it arrived, the simulator's own work inside it (not added to it), or
    when that work is done if it takes longer. An order write still waits the latency first and is
    placed after it, as before (what the master's stream reports comes after its answer)."""
    import lab.kite_sim.server as server

    slow: dict[str, float] = {"GET /user/margins": 0.0}

    def resolve(method: str, path: str):  # the simulator's own work for a read, made slow
        route, args = server_resolve(method, path)
        extra = slow.get(f"{route.method} {route.path}", 0.0)
        if not extra:
            return route, args
        handler = route.handler

        def slowly(call):
            time.sleep(extra)
            return handler(call)

        return dataclasses.replace(route, handler=slowly), args

    server_resolve = server.resolve
    monkeypatch.setattr(server, "resolve", resolve)
    sim = KiteSim()
    with running_sim(sim) as running:
        kdesk = move_desk_to_kite(build_desk(), running)
    front = MemoryFront(sim, MemoryBook(persist=frozenset({"MASTER"}))).start()
    try:
        s = kdesk.sessions["MASTER"]
        master = KiteBroker(api_key=s.api_key, access_token=s.access_token, root=front.root, user_id="MASTER")

        def timed(fn) -> float:
            started = time.perf_counter()
            fn()
            return time.perf_counter() - started

        sim.set_faults(latency_ms=1000)
        slow["GET /user/margins"] = 0.6
        inside = timed(master.funds)
        slow["GET /user/margins"] = 1.5
        longer = timed(master.funds)
        slow["GET /user/margins"] = 0.0
        slow["POST /orders/{variety}"] = 0.6
        write = timed(lambda: master.place_order(buy("byhand2")))
    finally:
        front.stop()
    assert 1.0 <= inside < 1.45  # 1.0 s after it arrived; 1.6 s when the work was added to it
    assert 1.5 <= longer < 2.3  # the work took longer than the latency: answered when done
    assert write >= 1.6  # a write: the latency, then the work (placed after the latency)


def test_kite_sim_command_memory_orders_prints_both_roots_and_stops_on_sigterm():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pms.settings_test", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "kite_sim", "--port", "0", "--memory-orders", "--persist-user", "M1"],
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
        figures = stats(root)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert root.startswith("http://127.0.0.1:") and ws_root.startswith("ws://127.0.0.1:")
    assert ws_root.removeprefix("ws") != root.removeprefix("http")  # a port of its own
    assert figures["orders"] == {}
    assert process.returncode == 0, err
