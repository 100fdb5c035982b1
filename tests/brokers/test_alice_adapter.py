"""The Alice Blue adapter's guards: no secret reaches standard output or the logs (the SDK prints
the checksum, the userSession and order payloads), and simulator credentials never leave loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from brokers.alice.client import AliceBroker
from brokers.alice.stream import OrderUpdateStream
from brokers.errors import BrokerError
from brokers.types import OrderRequest, OrderType, Product, Side
from lab.alice_sim.server import RunningSim
from tests.alice_helpers import alice_broker, running_alice_sim
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running() -> Iterator[RunningSim]:
    yield from running_alice_sim()


def test_no_secret_in_stdout_or_logs_through_login_orders_and_refusals(running, capfd, caplog):
    build_desk()
    caplog.set_level(logging.DEBUG)
    client = running.sim.store.register(user_id="C1")
    code = running.sim.store.auth_code("C1")
    broker = AliceBroker(user_id="C1", api_key=client.app_code, root=running.root, timeout=5.0)

    session = broker.vendor_login(auth_code=code, api_secret=client.api_secret)
    broker.place_order(OrderRequest("NFO", FUT, Side.BUY, 75, Product.NRML, OrderType.MARKET, tag="S1"))
    broker.orders()
    broker.funds()
    with pytest.raises(BrokerError):
        broker.vendor_login(auth_code="bad", api_secret=client.api_secret)
    running.sim.set_faults(user_id="C1", expire_token="now")
    with pytest.raises(BrokerError):
        broker.funds()

    import hashlib

    checksum = hashlib.sha256(f"C1{code}{client.api_secret}".encode()).hexdigest()
    out, err = capfd.readouterr()
    captured = out + err + caplog.text + repr(broker) + repr(session)
    for secret in (session.user_session, client.api_secret, client.app_code, code, checksum):
        assert secret not in captured
    assert out == ""  # the SDK's print()s go nowhere


def test_simulator_credentials_are_refused_off_loopback():
    broker = AliceBroker(
        user_id="C1",
        api_key="alicesim0123456789abcdef",
        access_token="x.y.z",
        root="https://a3.aliceblueonline.com/",
    )
    with pytest.raises(BrokerError) as refused:
        broker.funds()
    assert refused.value.code == "simulator_credentials"
    with pytest.raises(BrokerError):
        broker.vendor_login(auth_code="a", api_secret="b")


def test_simulator_session_is_refused_by_a_real_order_feed(running):
    build_desk()
    broker = alice_broker(running, "C1")
    stream = OrderUpdateStream(broker=broker, on_order=lambda o: None)  # the production socket
    with pytest.raises(BrokerError) as refused:
        stream.start()
    assert refused.value.code == "simulator_credentials"
