"""Issue 13 item 6 (said once): the paper exchange speaks brokers.types' vocabulary (MTF, TTL too)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.errors import InputRejected
from brokers.paper.client import PaperBroker
from brokers.paper.models import PaperInstrument, PaperOrder, PaperPosition, PaperTrade
from brokers.paper.services import paper_account_open
from brokers.types import (
    InstrumentType,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
    Vocabulary,
)
from tests.paper_factories import EquityFactory, NiftyIndexFactory, PaperInstrumentFactory

pytestmark = pytest.mark.django_db

D = Decimal
USER = "PV0001"


@pytest.fixture
def broker():
    """INFY at 1,500 (cash), the NIFTY future at 20,000; an account with 10 lakh."""
    EquityFactory()
    NiftyIndexFactory()
    PaperInstrumentFactory()
    paper_account_open(user_id=USER, cash=D("1000000"))
    return PaperBroker(USER)


def infy(quantity: int = 10, **kw) -> OrderRequest:
    kw.setdefault("product", Product.MTF)
    kw.setdefault("order_type", OrderType.MARKET)
    return OrderRequest(exchange="NSE", tradingsymbol="INFY", side=Side.BUY, quantity=quantity, **kw)


def test_paper_accepts_mtf_on_equity_and_blocks_its_full_value(broker):
    """Issue 13 item 6: MTF, a product of the types, is accepted for cash equity; nothing is lent,
    so it blocks its full value like CNC."""
    order_id = broker.place_order(infy(10))

    order = PaperOrder.objects.get(order_id=order_id)
    assert (order.product, order.status) == ("MTF", OrderStatus.COMPLETE)
    assert PaperTrade.objects.get(order=order).product == "MTF"
    assert PaperPosition.objects.get(tradingsymbol="INFY").product == "MTF"
    [seen] = broker.orders()
    assert (seen.product, seen.status) == (Product.MTF, OrderStatus.COMPLETE)
    [position] = broker.positions()
    assert (position.product, position.quantity) == (Product.MTF, 10)
    assert broker.funds().used == D("15000.00")  # 10 x 1,500 at the CNC rate (100%)
    [estimate] = broker.order_margins([infy(10)])
    assert estimate.total == D("15000.00")


def test_paper_refuses_mtf_on_derivatives_clearly(broker):
    """Issue 13 item 6: MTF is an equity product: a future refuses it, naming what it takes."""
    request = OrderRequest(
        exchange="NFO",
        tradingsymbol="NIFTY25DECFUT",
        side=Side.BUY,
        quantity=75,
        product=Product.MTF,
        order_type=OrderType.MARKET,
    )

    with pytest.raises(
        InputRejected, match=r"Product MTF is not allowed for NFO:NIFTY25DECFUT \(use MIS or NRML\)"
    ):
        broker.place_order(request)
    assert not PaperOrder.objects.exists()


def test_paper_refuses_ttl_validity_clearly(broker):
    """Issue 13 item 6: TTL, a validity of the types, needs minutes an order request does not carry:
    refused with the reason, not as an unknown word."""
    with pytest.raises(InputRejected, match="TTL validity needs a validity_ttl in minutes"):
        broker.place_order(infy(5, product=Product.CNC, validity=Validity.TTL))
    assert not PaperOrder.objects.exists()
    order_id = broker.place_order(infy(5, product=Product.CNC, validity=Validity.IOC))
    assert PaperOrder.objects.get(order_id=order_id).validity == "IOC"


@pytest.mark.parametrize(
    ("model", "field", "vocabulary"),
    [
        (PaperOrder, "side", Side),
        (PaperOrder, "order_type", OrderType),
        (PaperOrder, "product", Product),
        (PaperOrder, "validity", Validity),
        (PaperOrder, "status", OrderStatus),
        (PaperTrade, "side", Side),
        (PaperTrade, "product", Product),
        (PaperPosition, "product", Product),
    ],
)
def test_paper_model_choices_are_the_types_vocabulary(model, field, vocabulary: type[Vocabulary]):
    """Issue 13 item 6: the paper models' choices come from brokers.types (no drifted copy)."""
    assert model._meta.get_field(field).choices == vocabulary.choices()


def test_paper_instrument_types_are_the_types_vocabulary():
    """Issue 13 item 6: instrument types too, with their labels."""
    assert PaperInstrument._meta.get_field("instrument_type").choices == InstrumentType.choices()
    assert InstrumentType.INDEX.label == "Index (not tradable)"
    assert Product.MTF.label == "Margin trading facility"
