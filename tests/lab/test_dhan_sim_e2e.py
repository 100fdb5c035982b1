"""End to end on the Dhan path: DhanBroker -> the real dhanhq SDK -> HTTP -> dhan_sim -> the paper
exchange; and the engine's ticks with Dhan children on the DESIGN §3.6 desk."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.test import override_settings

from accounts.models import AccountStatus
from brokers.dhan.budget import Window, WriteBudget
from brokers.dhan.client import DhanBroker
from brokers.dhan.scrip import ScripCache
from brokers.errors import BrokerError, InputRejected, OutcomeUnknown, RateLimited, TokenExpired
from brokers.paper.models import PaperOrder
from brokers.types import InstrumentKey, OrderRequest, OrderStatus, OrderType, Product, Side
from lab.dhan_demo import move_to_dhan
from lab.dhan_sim.server import DhanSim, RunningSim, WriteLimiter
from replication.models import MappingStatus, OrderMapping
from replication.orchestrator import Orchestrator
from tests.dhan_helpers import running_dhan_sim
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db(transaction=True)

PLACE = "POST /v2/orders"
ENTRY = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}  # DESIGN §3.6 step 1


@pytest.fixture
def running() -> Iterator[RunningSim]:
    with running_dhan_sim() as sim:
        yield sim


@pytest.fixture
def desk():
    return build_desk()


def broker(running: RunningSim, client_id: str, **kwargs) -> DhanBroker:
    client = running.sim.store.register(client_id=client_id)
    kwargs.setdefault("timeout", 5.0)
    return DhanBroker(
        client_id=client_id,
        api_key=client.api_key,
        pin=client.pin,
        totp_secret=client.totp_secret,
        root=running.root,
        scrip_cache=ScripCache(),
        budget=kwargs.pop("budget", WriteBudget()),
        **kwargs,
    )


def eventually(count, *, within_s: float = 3.0) -> int:
    deadline = time.monotonic() + within_s
    while (value := count()) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


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


def test_dhan_e2e_place_book_positions_funds_margins(running, desk):
    client = broker(running, "C1")
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
    (single,) = client.order_margins([buy(75)])
    assert single.total > 0
    # With the position included, selling it back frees margin rather than needing more.
    sell = OrderRequest("NFO", FUT, Side.SELL, 75, Product.NRML, OrderType.MARKET)
    assert client.basket_margin([sell]).total < single.total
    assert client.ltp([InstrumentKey("NFO", FUT)]) == {InstrumentKey("NFO", FUT): Decimal("20000")}
    assert PaperOrder.objects.get(account__user_id="C1").tag == "R1C1S0"
    assert client.order_by_tag("R1C1S0").order_id == order_id
    assert client.order_by_tag("R404C1S0") is None


def test_dhan_e2e_modify_and_cancel_a_resting_limit(running, desk):
    client = broker(running, "C1")
    order_id = client.place_order(buy(order_type=OrderType.LIMIT, price=Decimal("19000"), tag="R2C1S0"))

    client.modify_order(order_id, price=Decimal("19100"))
    client.cancel_order(order_id)

    order = PaperOrder.objects.get(order_id=order_id)
    assert (order.price, order.status) == (Decimal("19100"), "CANCELLED")
    assert running.sim.hit_count(client_id="C1", route="PUT /v2/orders/{id}", status=200) == 1
    assert running.sim.hit_count(client_id="C1", route="DELETE /v2/orders/{id}", status=202) == 1


def test_dhan_e2e_write_timing_out_after_accept_is_unknown_found_by_tag_and_not_resent(running, desk, caplog):
    client = broker(running, "C2", timeout=1.0)
    client.funds()
    running.sim.set_faults(client_id="C2", timeout_after_place={"sleep_s": 2.0, "count": 1})

    with caplog.at_level(logging.DEBUG), pytest.raises(OutcomeUnknown):
        client.place_order(buy(tag="R9C2S0"))

    found = client.order_by_tag("R9C2S0")
    assert found is not None and found.status == OrderStatus.COMPLETE
    assert Counter(PaperOrder.objects.filter(account__user_id="C2").values_list("tag", flat=True)) == {
        "R9C2S0": 1
    }
    assert eventually(lambda: running.sim.hit_count(client_id="C2", route=PLACE)) == 1
    # The SDK's own ERROR record (with the exception text) never reaches the logs.
    assert not [r for r in caplog.records if "DhanHQConnection" in r.getMessage()]
    assert client.access_token not in caplog.text


def test_dhan_e2e_server_down_before_sending_is_unavailable_not_unknown(desk):
    client = DhanBroker(
        client_id="C1", access_token="tok", root="http://127.0.0.1:9", timeout=1.0, scrip_cache=ScripCache()
    )
    from brokers.dhan.scrip import ScripMaster

    client._scrips.get(lambda: ScripMaster([]))
    with pytest.raises(BrokerError) as failed:
        client.funds()
    assert failed.value.code == "broker_unavailable"


def test_dhan_e2e_hourly_budget_refuses_the_write_before_sending_it(running, desk):
    budget = WriteBudget((Window(1.0, 10), Window(60.0, 250), Window(3600.0, 3)))
    client = broker(running, "C1", budget=budget)

    for n in range(3):
        client.place_order(buy(tag=f"R{n}C1S0"))
    with pytest.raises(RateLimited) as refused:
        client.place_order(buy(tag="R3C1S0"))

    assert refused.value.code == "budget_spent" and not refused.value.permanent
    assert running.sim.hit_count(client_id="C1", route=PLACE) == 3


def test_dhan_e2e_burst_over_ten_a_second_is_paced_and_none_refused(running, desk):
    client = broker(running, "C1")
    started = time.monotonic()
    for n in range(12):
        client.place_order(buy(tag=f"B{n}C1S0"))
    assert time.monotonic() - started >= 0.9  # the eleventh waited for the second to pass
    assert running.sim.hit_count(client_id="C1", route=PLACE, status=429) == 0
    assert PaperOrder.objects.filter(account__user_id="C1").count() == 12


def test_dhan_e2e_simulator_refuses_the_eleventh_write_in_a_second_with_dh904(desk):
    frozen = WriteLimiter(clock=lambda: 0.0)
    with running_dhan_sim(DhanSim(limiter=frozen)) as running:
        client = broker(running, "C1", budget=WriteBudget((Window(1.0, 50),)))
        outcomes = []
        for n in range(11):
            try:
                client.place_order(buy(tag=f"R{n}C1S0"))
                outcomes.append("placed")
            except RateLimited:
                outcomes.append("refused")
    assert outcomes == ["placed"] * 10 + ["refused"]
    assert running.sim.hit_count(client_id="C1", route=PLACE, status=429) == 1
    assert PaperOrder.objects.filter(account__user_id="C1").count() == 10


def test_dhan_e2e_dead_token_logs_in_again_with_the_stored_totp(running, desk):
    client = broker(running, "C1")
    client.funds()
    running.sim.set_faults(client_id="C1", expire_token="now")

    client.place_order(buy(tag="R1C1S0"))

    assert running.sim.hit_count(route="POST /app/generateAccessToken", status=200) == 2
    assert PaperOrder.objects.filter(account__user_id="C1").count() == 1


def test_dhan_e2e_dead_token_with_login_refused_is_token_expired(running, desk):
    client = broker(running, "C1")
    client.funds()
    running.sim.set_faults(client_id="C1", expire_token="now", login_refused=True)

    with pytest.raises(TokenExpired):
        client.place_order(buy(tag="R1C1S0"))
    assert not PaperOrder.objects.filter(account__user_id="C1").exists()


def test_dhan_e2e_simulator_credentials_never_leave_loopback(running, desk):
    client = running.sim.store.register(client_id="C1")
    remote = DhanBroker(
        client_id="C1",
        api_key=client.api_key,
        pin=client.pin,
        totp_secret=client.totp_secret,
        root="https://api.dhan.co",
    )
    with pytest.raises(BrokerError) as refused:
        remote.funds()
    assert refused.value.code == "simulator_credentials"
    token = running.sim.store.open("C1").access_token
    with pytest.raises(BrokerError):
        DhanBroker(client_id="C1", access_token=token, root="https://api.dhan.co").funds()


def test_dhan_e2e_instrument_dhan_does_not_list_is_refused_with_its_reason(running, desk):
    client = broker(running, "C1")
    request = OrderRequest("NFO", "BANKNIFTY25DECFUT", Side.BUY, 30, Product.NRML, OrderType.MARKET)
    with pytest.raises(InputRejected) as refused:
        client.place_order(request)
    assert refused.value.code == "instrument_not_listed"


# --- the engine with Dhan children -----------------------------------------------------------------


@contextmanager
def engine() -> Iterator[Orchestrator]:
    orch = Orchestrator(holder="dhan-e2e", workers=2)
    try:
        yield orch
    finally:
        orch.close()


def child_mappings(desk, name: str) -> list[OrderMapping]:
    return list(OrderMapping.objects.filter(child=desk.children[name], quantity__gt=0).order_by("id"))


def test_dhan_e2e_engine_replicates_an_entry_to_dhan_children(running, desk):
    move_to_dhan(desk.children["C1"], running.sim)
    move_to_dhan(desk.children["C2"], running.sim)
    with engine() as orch:
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        orch.run_tick()
        orch.run_tick()

    assert desk.positions(FUT) == ENTRY
    for name in ("C1", "C2"):
        (mapping,) = child_mappings(desk, name)
        assert mapping.status == MappingStatus.FILLED, name
        assert running.sim.hit_count(client_id=name, route=PLACE, status=200) == 1
        assert PaperOrder.objects.get(account__user_id=name).tag == mapping.tag


def test_dhan_e2e_engine_moves_only_the_dhan_child_whose_login_fails_to_needs_login(running, desk):
    move_to_dhan(desk.children["C5"], running.sim)
    move_to_dhan(desk.children["C1"], running.sim)
    with engine() as orch:
        orch.run_tick()
        running.sim.set_faults(client_id="C5", expire_token="on_order_write", login_refused=True)
        desk.place("BUY", FUT, 150)
        orch.run_tick()
        orch.run_tick()

    c5, c1 = desk.children["C5"], desk.children["C1"]
    c5.refresh_from_db()
    c1.refresh_from_db()
    assert c5.status == AccountStatus.NEEDS_LOGIN
    assert c1.status == AccountStatus.ACTIVE
    assert not PaperOrder.objects.filter(account__user_id="C5").exists()
    assert desk.positions(FUT) == {**ENTRY, "C5": 0}


def test_dhan_e2e_engine_write_timing_out_after_accept_is_found_by_tag_and_never_sent_twice(running, desk):
    move_to_dhan(desk.children["C2"], running.sim)
    with override_settings(DHAN_TIMEOUT_S=1, UNKNOWN_GRACE_SECONDS=30), engine() as orch:
        orch.run_tick()
        running.sim.set_faults(client_id="C2", timeout_after_place={"sleep_s": 2.0, "count": 1})
        desk.place("BUY", FUT, 150)

        first = orch.run_tick()
        (c2,) = child_mappings(desk, "C2")
        assert first.dispatch.unknown == 1
        assert c2.status == MappingStatus.UNKNOWN
        time.sleep(1.2)
        orch.run_tick()
        orch.run_tick()

    c2.refresh_from_db()
    order = PaperOrder.objects.get(account__user_id="C2")
    assert c2.status == MappingStatus.FILLED
    assert (order.tag, order.order_id, order.status) == (c2.tag, c2.broker_order_id, "COMPLETE")
    assert running.sim.hit_count(client_id="C2", route=PLACE) == 1
    assert desk.positions(FUT)["C2"] == ENTRY["C2"]


def test_faulty_dhan_raises_the_dhan_adapters_errors_over_the_simulator(running, desk):
    from tests.faulty_broker import Faults, FaultyDhan

    client = running.sim.store.register(client_id="C1")
    faulty = FaultyDhan(
        client_id="C1",
        api_key=client.api_key,
        pin=client.pin,
        totp_secret=client.totp_secret,
        root=running.root,
        scrip_cache=ScripCache(),
        budget=WriteBudget(),
    )
    faulty.faults = Faults(rate_limited_once={"C1"}, token_expired=set())
    with pytest.raises(RateLimited):
        faulty.place_order(buy(tag="R1C1S0"))
    order_id = faulty.place_order(buy(tag="R1C1S0"))
    assert [o.order_id for o in faulty.orders()] == [order_id]
    faulty.faults.token_expired.add("C1")
    with pytest.raises(TokenExpired):
        faulty.funds()
