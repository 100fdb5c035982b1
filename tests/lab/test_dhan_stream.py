"""Dhan's order-update stream on a real socket: the simulator's ws:// server pushes `order_alert`
messages for every order of the logged-in client (placed through the API or elsewhere), and
DhanOrderStream hands them on, waking the orchestrator loop as Kite's master_stream does."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.test import override_settings

from brokers.dhan.client import DhanBroker
from brokers.dhan.scrip import ScripCache
from brokers.dhan.stream import DhanOrderStream
from brokers.errors import BrokerError
from brokers.paper.services import paper_order_place
from brokers.types import Order, OrderRequest, OrderStatus, OrderType, Product, Side
from replication.wakeup import wait_for_wakeup, wake_remote
from tests.dhan_helpers import running_dhan_sim
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db(transaction=True)


def until(check, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(check())


def test_dhan_stream_delivers_orders_from_any_platform_and_wakes_the_loop(tmp_path):
    build_desk()
    seen: list[Order] = []
    with running_dhan_sim() as running, override_settings(WAKE_FILE=str(tmp_path / "wake")):
        client = running.sim.store.register(client_id="MASTER")
        token = running.sim.store.open("MASTER").access_token

        def on_order(order: Order) -> None:
            seen.append(order)
            wake_remote()

        stream = DhanOrderStream(
            client_id="MASTER", access_token=token, on_order=on_order, root=running.ws_root
        )
        stream.start()
        try:
            assert stream.connected.wait(5)
            stop = threading.Event()
            wait_for_wakeup(stop=stop, timeout=0.1)  # records the wake file's first stamp
            # The master trades on Dhan's web or mobile app: straight into the paper book.
            placed = paper_order_place(
                user_id="MASTER", exchange="NFO", tradingsymbol=FUT, side="BUY", quantity=75,
                product="NRML", order_type="MARKET",
            )  # fmt: skip
            assert until(lambda: any(o.order_id == placed.order_id for o in seen))
            started = time.monotonic()
            wait_for_wakeup(stop=stop, timeout=3.0)
            assert time.monotonic() - started < 2.0  # woken, not timed out
            # An order through the API (the adapter, real SDK) shows too, with its correlation id.
            api = DhanBroker(
                client_id="MASTER", api_key=client.api_key, pin=client.pin, totp_secret=client.totp_secret,
                root=running.root, scrip_cache=ScripCache(),
            )  # fmt: skip
            order_id = api.place_order(
                OrderRequest(
                    "NFO", FUT, Side.BUY, 75, Product.NRML, OrderType.LIMIT, price=Decimal("19000"), tag="R1M"
                )
            )
            assert until(lambda: any(o.order_id == order_id and o.tag == "R1M" for o in seen))
            api.cancel_order(order_id)
            assert until(
                lambda: any(o.order_id == order_id and o.status == OrderStatus.CANCELLED for o in seen)
            )
        finally:
            stream.stop()
    assert not stream.connected.is_set()
    assert stream.updates >= 3


def test_dhan_stream_with_a_dead_token_is_refused_and_gives_up():
    with running_dhan_sim() as running:
        running.sim.store.register(client_id="C1")
        stream = DhanOrderStream(
            client_id="C1", access_token="dhansimnotatoken", on_order=lambda o: None, root=running.ws_root,
            max_tries=2, backoff_s=0.05,
        )  # fmt: skip
        stream.start()
        assert stream.gave_up.wait(5)
        stream.stop()


def test_dhan_stream_keeps_simulator_tokens_on_loopback():
    stream = DhanOrderStream(client_id="C1", access_token="dhansim" + "0" * 20, on_order=lambda o: None)
    with pytest.raises(BrokerError) as refused:
        stream.start()
    assert refused.value.code == "simulator_credentials"
