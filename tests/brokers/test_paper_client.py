"""PaperBroker: conforms to BrokerClient, maps to brokers.types, is safe from many threads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings

from brokers.base import BrokerClient
from brokers.errors import InputRejected
from brokers.paper.client import PaperBroker
from brokers.paper.models import PaperOrder, PaperPosition
from brokers.paper.services import paper_account_open, paper_price_set
from brokers.registry import BrokerCredentials, build_client
from brokers.types import (
    Funds,
    Instrument,
    InstrumentKey,
    InstrumentType,
    MarginEstimate,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Product,
    SegmentFunds,
    Side,
)
from tests.paper_factories import NiftyIndexFactory, NiftyOptionFactory, PaperInstrumentFactory

D = Decimal
FUT = "NIFTY25DECFUT"
CALL = "NIFTY25DEC20000CE"


def request(symbol: str = FUT, side: Side = Side.BUY, quantity: int = 75, **kw) -> OrderRequest:
    kw.setdefault("order_type", OrderType.MARKET)
    return OrderRequest(
        exchange="NFO", tradingsymbol=symbol, side=side, quantity=quantity, product=Product.NRML, **kw
    )


@pytest.fixture
def market(db):
    NiftyIndexFactory()
    PaperInstrumentFactory()
    NiftyOptionFactory()


@pytest.fixture
def broker(market):
    paper_account_open(user_id="PB0001", cash=D("1000000"))
    return PaperBroker("PB0001")


def test_paper_broker_is_a_broker_client():
    assert isinstance(PaperBroker("X"), BrokerClient)


def test_paper_broker_methods_return_broker_types(broker):
    order_id = broker.place_order(request(order_type=OrderType.LIMIT, price=D("19900"), tag="t1"))
    assert isinstance(order_id, str)
    assert broker.modify_order(order_id, price=D("19800")) == order_id
    assert broker.cancel_order(order_id) == order_id
    broker.place_order(request())

    funds = broker.funds()
    assert isinstance(funds, Funds)
    assert all(isinstance(s, SegmentFunds) for s in funds.segments)
    assert (funds.used, funds.available, funds.capital) == (D("150000.00"), D("850000.00"), D("1000000.00"))
    assert [s.segment for s in funds.segments if s.enabled] == ["equity"]

    orders = broker.orders()
    assert all(isinstance(o, Order) for o in orders)
    first, second = orders
    assert (first.order_id, first.status, first.cancelled_quantity, first.tag) == (
        order_id,
        OrderStatus.CANCELLED,
        75,
        "t1",
    )
    assert (second.status, second.filled_quantity, second.average_price) == (
        OrderStatus.COMPLETE,
        75,
        D("20000"),
    )
    assert second.placed_at is not None and second.placed_at.utcoffset().total_seconds() == 0

    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("20010"))
    (position,) = broker.positions()
    assert isinstance(position, Position)
    assert (position.quantity, position.last_price, position.unrealised_pnl) == (75, D("20010"), D("750.00"))

    margins = broker.order_margins([request(), request(CALL)])
    assert all(isinstance(m, MarginEstimate) for m in margins)
    assert [m.total for m in margins] == [D("150075.00"), D("15000.00")]
    assert isinstance(broker.basket_margin([request()]), MarginEstimate)

    instruments = broker.instruments()
    assert all(isinstance(i, Instrument) for i in instruments)
    future = next(i for i in instruments if i.tradingsymbol == FUT)
    assert (future.lot_size, future.instrument_type, future.freeze_quantity) == (75, InstrumentType.FUT, 1800)
    assert future.expiry is not None and future.expiry.utcoffset().total_seconds() == 0

    key = InstrumentKey("NFO", FUT)
    assert broker.ltp([key, InstrumentKey("NFO", "NOPE")]) == {key: D("20010")}


def test_paper_broker_rejection_shows_in_orders(broker):
    order_id = broker.place_order(request(quantity=1500))  # 20 lots: 30 lakh of margin
    (order,) = broker.orders()
    assert order.order_id == order_id
    assert order.status == OrderStatus.REJECTED
    assert order.status_message.startswith("Insufficient funds. Required margin is 3000000.00")


def test_paper_broker_basket_margin_sees_positions_and_hedges(broker):
    # Worked example unit: 1 lot call + 1 lot short future = 15,000 + 1,50,000 - 1,05,000.
    unit = broker.basket_margin([request(CALL), request(side=Side.SELL)])
    assert unit.total == D("60000.00")
    assert unit.per_order == (D("15000.00"), D("150000.00"))
    broker.place_order(request(side=Side.SELL, quantity=150))
    hedge = broker.basket_margin([request(CALL, quantity=150)])
    assert hedge.total == D("0.00")  # the call releases more (hedge) than its premium costs


def test_paper_broker_unknown_account_is_input_rejected(market):
    with pytest.raises(InputRejected, match="unknown paper account"):
        PaperBroker("NOBODY").funds()
    with pytest.raises(InputRejected, match="unknown paper account"):
        PaperBroker("NOBODY").place_order(request())


def test_paper_broker_latency_before_the_work(broker):
    slow = PaperBroker("PB0001", latency_ms=60)
    started = time.perf_counter()
    slow.funds()
    assert time.perf_counter() - started >= 0.06


@override_settings(PAPER_LATENCY_MS=25)
def test_paper_broker_from_registry_credentials(db):
    client = build_client(BrokerCredentials(broker="paper", user_id="PB0009"))
    assert isinstance(client, PaperBroker)
    assert (client.user_id, client.latency_ms) == ("PB0009", 25.0)


def test_paper_broker_place_order_query_budget(broker, django_assert_max_num_queries):
    # First order ever: account lock, instrument, order number, order, position, trade (+ SAVEPOINT
    # and RELEASE, as the test runs inside a transaction).
    with django_assert_max_num_queries(8):
        broker.place_order(request())
    # Later orders also read the book: positions and live orders.
    with django_assert_max_num_queries(10):
        broker.place_order(request())


def _place_many(user_id: str, count: int) -> list[str]:
    try:
        client = PaperBroker(user_id)
        return [client.place_order(request()) for _ in range(count)]
    finally:
        connection.close()  # each thread has its own connection; close it before the thread ends


@pytest.mark.django_db(transaction=True)
def test_paper_broker_threads_lose_no_orders(market):
    users = [f"PT{n:04d}" for n in range(20)]
    for user_id in users:
        paper_account_open(user_id=user_id, cash=D("10000000"))
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(_place_many, users, [3] * len(users)))
    ids = [order_id for batch in results for order_id in batch]
    assert len(ids) == len(set(ids)) == 60
    assert PaperOrder.objects.filter(status=OrderStatus.COMPLETE).count() == 60
    assert sorted(PaperPosition.objects.values_list("quantity", flat=True)) == [225] * 20


@pytest.mark.django_db(transaction=True)
def test_paper_broker_threads_on_one_account_serialise(market):
    paper_account_open(user_id="PT9999", cash=D("10000000"))
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(_place_many, ["PT9999"] * 10, [2] * 10))
    ids = [order_id for batch in results for order_id in batch]
    assert len(set(ids)) == 20
    assert PaperPosition.objects.get(account__user_id="PT9999").quantity == 1500
