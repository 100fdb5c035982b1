"""Alice Blue's order feed on a real socket: the simulator's loopback WebSocket pushes each change
of the user's orders to the adapter's stream, which hands it to `on_order` (what wakes the engine)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from brokers.alice.stream import OrderUpdateStream
from brokers.types import Order, OrderRequest, OrderStatus, OrderType, Product, Side
from lab.alice_sim.server import RunningSim
from tests.alice_helpers import alice_broker, running_alice_sim
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running() -> Iterator[RunningSim]:
    yield from running_alice_sim()


def test_order_feed_delivers_an_order_placed_elsewhere_and_keeps_heartbeating(running):
    build_desk()
    watcher = alice_broker(running, "MASTER")
    seen: list[Order] = []
    arrived = threading.Event()

    def on_order(order: Order) -> None:
        seen.append(order)
        arrived.set()

    stream = OrderUpdateStream(broker=watcher, on_order=on_order, ws_url=running.ws_root, heartbeat_s=0.2)
    stream.start()
    try:
        assert stream.connected.wait(5)
        other = alice_broker(running, "MASTER")  # another process: the web, the mobile app
        order_id = other.place_order(
            OrderRequest("NFO", FUT, Side.BUY, 75, Product.NRML, OrderType.MARKET, tag="FEED1")
        )
        assert arrived.wait(5)
        time.sleep(0.5)
    finally:
        stream.stop()
    assert order_id in {o.order_id for o in seen}
    assert any(o.status is OrderStatus.COMPLETE and o.filled_quantity == 75 for o in seen)
    assert running.sim.feed.heartbeats >= 1


def test_order_feed_refuses_a_wrong_token(running):
    build_desk()
    watcher = alice_broker(running, "MASTER")
    stream = OrderUpdateStream(broker=watcher, on_order=lambda o: None, ws_url=running.ws_root)
    stream._token = lambda: "forged"  # type: ignore[method-assign]
    stream.start()
    try:
        assert stream.gave_up.wait(5)
        assert not stream.connected.is_set()
    finally:
        stream.stop()
