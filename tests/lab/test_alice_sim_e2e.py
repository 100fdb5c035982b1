"""End to end on the Alice Blue path: AliceBroker -> the real Ant-A3 TradeHub SDK -> HTTP ->
alice_sim -> the paper exchange."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from brokers.alice.budget import Budget, budgets_for
from brokers.errors import InputRejected, OutcomeUnknown, RateLimited, TokenExpired
from brokers.paper.models import PaperOrder
from brokers.types import InstrumentKey, OrderRequest, OrderStatus, OrderType, Product, Side
from lab.alice_sim.server import AliceSim, RunningSim
from tests.alice_helpers import alice_broker, running_alice_sim
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db(transaction=True)

PLACE = "placeorder"


@pytest.fixture
def running() -> Iterator[RunningSim]:
    yield from running_alice_sim()


@pytest.fixture
def desk():
    return build_desk()


def buy(
    quantity: int = 75, *, tag: str = "", order_type: OrderType = OrderType.MARKET, price=None
) -> OrderRequest:
    return OrderRequest(
        exchange="NFO",
        tradingsymbol=FUT,
        side=Side.BUY,
        quantity=quantity,
        product=Product.NRML,
        order_type=order_type,
        price=price,
        tag=tag,
    )


def test_alice_e2e_place_book_positions_funds_margins(running, desk):
    client = alice_broker(running, "C1")
    before = client.funds()

    order_id = client.place_order(buy(tag="R1C1S0"))

    (order,) = client.orders()
    assert (order.order_id, order.key, order.tag) == (order_id, InstrumentKey("NFO", FUT), "R1C1S0")
    assert (order.status, order.filled_quantity, order.side) == (OrderStatus.COMPLETE, 75, Side.BUY)
    (position,) = client.positions()
    assert (position.key, position.quantity, position.product) == (
        InstrumentKey("NFO", FUT),
        75,
        Product.NRML,
    )
    after = client.funds()
    assert after.used > before.used == Decimal("0")
    assert after.capital == before.capital
    assert client.basket_margin([buy(75), buy(150)]).total > client.order_margins([buy(75)])[0].total > 0
    assert running.sim.protection[order_id] == Decimal("3")  # MARKET carries marketProtectionPercent
    assert PaperOrder.objects.get(account__user_id="C1").tag == "R1C1S0"


def test_alice_e2e_empty_book_and_positions_are_empty_lists(running, desk):
    client = alice_broker(running, "C1")
    assert (client.orders(), client.positions()) == ([], [])  # EC916 / EC920: nothing found


def test_alice_e2e_modify_and_cancel_a_resting_limit(running, desk):
    client = alice_broker(running, "C1")
    order_id = client.place_order(buy(order_type=OrderType.LIMIT, price=Decimal("19000"), tag="R2C1S0"))

    client.modify_order(order_id, price=Decimal("19100"))
    client.cancel_order(order_id)

    order = PaperOrder.objects.get(order_id=order_id)
    assert (order.price, order.status) == (Decimal("19100"), "CANCELLED")
    assert running.sim.protection[order_id] is None  # a LIMIT order carries none


def test_alice_e2e_write_timing_out_after_accept_is_unknown_found_by_tag_and_never_resent(running, desk):
    client = alice_broker(running, "C2", timeout=1.0)
    running.sim.set_faults(user_id="C2", timeout_after_place={"sleep_s": 2.5})

    with pytest.raises(OutcomeUnknown):
        client.place_order(buy(tag="R3C2S0"))

    found = [o for o in client.orders() if o.tag == "R3C2S0"]
    assert [o.status for o in found] == [OrderStatus.COMPLETE]
    time.sleep(2.0)  # the simulator counts a request once it has answered it
    assert running.sim.hit_count(user_id="C2", route=PLACE) == 1  # sent once, never again
    assert PaperOrder.objects.filter(account__user_id="C2").count() == 1


def test_alice_e2e_server_error_after_accept_is_unknown_not_a_rejection(running, desk):
    client = alice_broker(running, "C2")
    running.sim.set_faults(user_id="C2", error_after_place={"status": 502})
    with pytest.raises(OutcomeUnknown):
        client.place_order(buy(tag="R4C2S0"))
    assert [o.tag for o in client.orders()] == ["R4C2S0"]


def test_alice_e2e_refusals_carry_their_ec_codes(running, desk):
    client = alice_broker(running, "C1")
    with pytest.raises(InputRejected) as unlisted:
        client.place_order(
            OrderRequest("NFO", "NOSUCH24DECFUT", Side.BUY, 75, Product.NRML, OrderType.MARKET)
        )
    assert unlisted.value.code == "instrument_not_listed"
    with pytest.raises(InputRejected) as tag:
        client.place_order(buy(tag="X" * 51))
    assert tag.value.code == "tag_invalid"
    # The server's own EC971 when the adapter's check is bypassed (the SDK checks nothing).
    client._check_tag = lambda tag: None  # type: ignore[method-assign]
    with pytest.raises(InputRejected) as server_tag:
        client.place_order(buy(tag="X" * 51))
    assert (server_tag.value.code, "EC971" in server_tag.value.message) == ("tag_invalid", True)
    assert running.sim.hit_count(user_id="C1", route=PLACE, status=200) == 1


def test_alice_e2e_session_expired_is_token_expired_and_nothing_placed(running, desk):
    client = alice_broker(running, "C3")
    running.sim.set_faults(user_id="C3", expire_token="now")
    with pytest.raises(TokenExpired):
        client.funds()
    with pytest.raises(TokenExpired):
        client.place_order(buy(tag="R5C3S0"))
    assert not PaperOrder.objects.filter(account__user_id="C3").exists()


def test_alice_e2e_a_failed_vendor_login_keeps_the_live_session(running, desk):
    client = alice_broker(running, "C1")
    with pytest.raises(TokenExpired) as refused:
        client.vendor_login(auth_code="not-a-code", api_secret="wrong")
    assert refused.value.code == "login_refused"
    assert client.funds().capital > 0  # the session held before still works


def test_alice_e2e_burst_is_paced_within_the_write_budget(running, desk):
    client = alice_broker(running, "C1")
    started = time.monotonic()
    ids = [client.place_order(buy(tag=f"B{i}")) for i in range(25)]
    elapsed = time.monotonic() - started

    assert len(set(ids)) == 25
    assert running.sim.hit_count(user_id="C1", route=PLACE, status=429) == 0
    assert elapsed >= 2.5  # 8 a second (the engine's budget, under SEBI's 10): the 25th waited 3 s
    assert budgets_for("C1").writes.used(1.0) <= 8


def test_alice_e2e_sim_refuses_a_burst_beyond_ten_a_second_as_rate_limited(desk):
    for running in running_alice_sim(AliceSim()):
        client = alice_broker(running, "C1")
        budgets_for("C1").writes = Budget(((1.0, 1000),))  # the adapter's budget out of the way
        results = []
        for i in range(12):
            try:
                results.append(client.place_order(buy(tag=f"X{i}")))
            except RateLimited:
                results.append("limited")
        assert results.count("limited") >= 1
        assert running.sim.hit_count(user_id="C1", route=PLACE, status=429) == results.count("limited")
        assert PaperOrder.objects.filter(account__user_id="C1").count() == 12 - results.count("limited")
