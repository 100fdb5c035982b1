"""Paper exchange services: fills, margins, funds, rejections, modify/cancel, P&L, input errors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from brokers.errors import InputRejected, OrderRejected
from brokers.paper.models import (
    InstrumentType,
    OrderStatus,
    PaperAccount,
    PaperInstrument,
    PaperOrder,
    PaperPosition,
    PaperTrade,
)
from brokers.paper.selectors import paper_funds_detail, paper_order_list
from brokers.paper.services import (
    paper_account_open,
    paper_account_set_cash,
    paper_order_cancel,
    paper_order_modify,
    paper_order_place,
    paper_price_set,
    paper_random_walk,
)
from tests.paper_factories import EquityFactory, NiftyIndexFactory, NiftyOptionFactory, PaperInstrumentFactory

pytestmark = pytest.mark.django_db

D = Decimal
FUT = "NIFTY25DECFUT"
CALL = "NIFTY25DEC20000CE"
PUT = "NIFTY25DEC20000PE"
USER = "PA0001"


@pytest.fixture
def nifty():
    """NIFTY at 20,000 (index, future), the 20000 call at 200 and put at 150; an account with 10 lakh."""
    NiftyIndexFactory()
    PaperInstrumentFactory()
    NiftyOptionFactory()
    NiftyOptionFactory(instrument_type=InstrumentType.PE, last_price=D("150.00"))
    return paper_account_open(user_id=USER, cash=D("1000000"))


def place(symbol: str = FUT, side: str = "BUY", quantity: int = 75, order_type: str = "MARKET", **kw):
    kw.setdefault("exchange", "NFO")
    kw.setdefault("product", "NRML")
    return paper_order_place(
        user_id=kw.pop("user_id", USER),
        tradingsymbol=symbol,
        side=side,
        quantity=quantity,
        order_type=order_type,
        **kw,
    )


def funds():
    return paper_funds_detail(user_id=USER)


def position(symbol: str = FUT) -> PaperPosition:
    return PaperPosition.objects.get(account__user_id=USER, tradingsymbol=symbol)


# --- Accounts -----------------------------------------------------------------------------------


def test_account_open_is_idempotent_and_keeps_cash(nifty):
    again = paper_account_open(user_id=USER, cash=D("5"))
    assert again.pk == nifty.pk
    assert again.cash == D("1000000.00")
    assert paper_account_set_cash(user_id=USER, cash=D("2500000")).cash == D("2500000.00")
    assert funds().capital == D("2500000.00")


# --- Futures ------------------------------------------------------------------------------------


def test_market_future_fills_at_last_and_blocks_ten_percent(nifty):
    order = place()
    assert order.status == OrderStatus.COMPLETE
    assert (order.filled_quantity, order.average_price) == (75, D("20000"))
    assert (position().quantity, position().average_price) == (75, D("20000"))
    assert PaperTrade.objects.filter(order=order, quantity=75, price=D("20000")).exists()
    detail = funds()
    assert detail.used == D("150000.00")
    assert detail.available == D("850000.00")
    assert detail.capital == D("1000000.00")


def test_funds_follow_price_unrealised_pnl_and_margin(nifty):
    place()
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("20100"))
    detail = funds()
    assert detail.unrealised_pnl == D("7500.00")
    assert detail.capital == D("1007500.00")
    assert detail.used == D("150750.00")  # 10% of 75 x 20,100
    assert detail.available == D("856750.00")


def test_limit_rests_blocks_margin_then_fills_at_limit_when_crossed(nifty):
    order = place(order_type="LIMIT", price=D("19900"))
    assert order.status == OrderStatus.OPEN
    assert funds().used == D("149250.00")  # blocked as if filled at the limit
    assert paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("19950")) == []
    moved = paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("19880"))
    assert [o.order_id for o in moved] == [order.order_id]
    order.refresh_from_db()
    assert order.status == OrderStatus.COMPLETE
    assert order.average_price == D("19900")
    assert position().average_price == D("19900")


def test_marketable_limit_fills_at_last_price(nifty):
    order = place(side="SELL", order_type="LIMIT", price=D("19950"))
    assert order.status == OrderStatus.COMPLETE
    assert order.average_price == D("20000")
    assert position().quantity == -75


def test_sl_sell_waits_for_trigger_then_fills(nifty):
    place(quantity=75)
    stop = place(side="SELL", order_type="SL", price=D("19790"), trigger_price=D("19800"))
    assert stop.status == OrderStatus.TRIGGER_PENDING
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("19850"))
    stop.refresh_from_db()
    assert stop.status == OrderStatus.TRIGGER_PENDING
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("19800"))
    stop.refresh_from_db()
    assert (stop.status, stop.average_price) == (OrderStatus.COMPLETE, D("19800"))
    assert position().quantity == 0
    assert position().realised_pnl == D("-15000.00")


def test_sl_gap_through_limit_rests_open_until_crossed(nifty):
    stop = place(side="SELL", order_type="SL", price=D("19790"), trigger_price=D("19800"))
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("19700"))
    stop.refresh_from_db()
    assert stop.status == OrderStatus.OPEN  # triggered, but the limit is not reached
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("19795"))
    stop.refresh_from_db()
    assert (stop.status, stop.average_price) == (OrderStatus.COMPLETE, D("19790"))


def test_slm_buy_triggers_and_fills_at_market(nifty):
    stop = place(order_type="SL-M", trigger_price=D("20100"))
    assert stop.status == OrderStatus.TRIGGER_PENDING
    assert funds().used == D("150750.00")  # blocked at the trigger price
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("20150"))
    stop.refresh_from_db()
    assert (stop.status, stop.average_price) == (OrderStatus.COMPLETE, D("20150"))


# --- Options and the hedge offset ---------------------------------------------------------------


def test_long_option_blocks_premium(nifty):
    order = place(CALL, quantity=75)
    assert (order.status, order.average_price) == (OrderStatus.COMPLETE, D("200"))
    detail = funds()
    assert detail.used == D("15000.00")
    assert detail.margin.option_premium == D("15000.00")
    assert detail.available == D("985000.00")


def test_long_option_limit_then_fill(nifty):
    order = place(CALL, order_type="LIMIT", price=D("180"))
    assert order.status == OrderStatus.OPEN
    assert funds().used == D("13500.00")
    paper_price_set(exchange="NFO", tradingsymbol=CALL, price=D("179"))
    order.refresh_from_db()
    assert (order.status, order.average_price) == (OrderStatus.COMPLETE, D("180"))


def test_short_option_margin_on_underlying_and_moves_with_it(nifty):
    order = place(PUT, side="SELL")
    assert order.status == OrderStatus.COMPLETE
    assert funds().margin.short_options == D("150000.00")
    paper_price_set(exchange="NSE", tradingsymbol="NIFTY 50", price=D("21000"))
    assert funds().margin.short_options == D("157500.00")


def test_short_option_sl_order_waits_for_trigger(nifty):
    stop = place(CALL, side="SELL", order_type="SL", price=D("190"), trigger_price=D("195"))
    assert stop.status == OrderStatus.TRIGGER_PENDING
    assert funds().used == D("150000.00")
    paper_price_set(exchange="NFO", tradingsymbol=CALL, price=D("194"))
    stop.refresh_from_db()
    assert (stop.status, stop.average_price) == (OrderStatus.COMPLETE, D("194"))
    assert position(CALL).quantity == -75


def test_hedge_offset_reduces_short_future_margin_when_call_bought(nifty):
    place(side="SELL", quantity=150)
    assert funds().used == D("300000.00")
    place(CALL, quantity=150)
    detail = funds()
    assert detail.margin.hedge_benefit == D("210000.00")
    assert detail.used == D("120000.00")  # DESIGN §3.6 step 4
    assert detail.available == D("880000.00")


def test_open_hedge_order_counts_towards_offset(nifty):
    place(side="SELL", quantity=75)
    place(CALL, order_type="LIMIT", price=D("150"))  # resting long call
    assert funds().used == D("150000.00") + D("11250.00") - D("105000.00")


# --- Rejection, modify, cancel ------------------------------------------------------------------


def test_insufficient_funds_rejected_in_the_book(nifty):
    paper_account_set_cash(user_id=USER, cash=D("100000"))
    order = place(quantity=150)
    assert order.order_id
    assert order.status == OrderStatus.REJECTED
    assert order.status_message == (
        "Insufficient funds. Required margin is 300000.00 but available margin is 100000.00."
    )
    assert [(o.order_id, o.status) for o in paper_order_list(user_id=USER)] == [
        (order.order_id, OrderStatus.REJECTED)
    ]
    assert not PaperPosition.objects.exists()
    assert funds().used == D("0.00")


def test_order_reducing_margin_accepted_when_short_of_funds(nifty):
    place(quantity=150)
    paper_account_set_cash(user_id=USER, cash=D("100000"))  # now under water
    order = place(side="SELL", quantity=75)
    assert order.status == OrderStatus.COMPLETE


def test_modify_then_cancel_resting_limit(nifty):
    order = place(order_type="LIMIT", price=D("19900"))
    modified = paper_order_modify(user_id=USER, order_id=order.order_id, price=D("19800"), quantity=150)
    assert (modified.price, modified.quantity, modified.modifications) == (D("19800"), 150, 1)
    assert modified.status == OrderStatus.OPEN
    assert funds().used == D("297000.00")
    cancelled = paper_order_cancel(user_id=USER, order_id=order.order_id)
    assert cancelled.status == OrderStatus.CANCELLED
    assert funds().used == D("0.00")
    with pytest.raises(InputRejected, match="cannot be modified as it is cancelled"):
        paper_order_modify(user_id=USER, order_id=order.order_id, price=D("19850"))
    with pytest.raises(InputRejected, match="cannot be cancelled"):
        paper_order_cancel(user_id=USER, order_id=order.order_id)


def test_modify_to_cross_fills_at_last(nifty):
    order = place(order_type="LIMIT", price=D("19900"))
    modified = paper_order_modify(user_id=USER, order_id=order.order_id, price=D("20050"))
    assert (modified.status, modified.average_price) == (OrderStatus.COMPLETE, D("20000"))


def test_modify_beyond_funds_raises_and_leaves_order(nifty):
    paper_account_set_cash(user_id=USER, cash=D("200000"))
    order = place(order_type="LIMIT", price=D("19900"))
    with pytest.raises(OrderRejected, match="Insufficient funds"):
        paper_order_modify(user_id=USER, order_id=order.order_id, quantity=150)
    order.refresh_from_db()
    assert (order.quantity, order.modifications, order.status) == (75, 0, OrderStatus.OPEN)


def test_modify_limit_capped_at_25(nifty):
    order = place(order_type="LIMIT", price=D("19000"))
    PaperOrder.objects.filter(pk=order.pk).update(modifications=25)
    with pytest.raises(InputRejected, match="Maximum allowed order modifications"):
        paper_order_modify(user_id=USER, order_id=order.order_id, price=D("19100"))


def test_unknown_order_cannot_be_modified_or_cancelled(nifty):
    with pytest.raises(InputRejected, match="unknown order"):
        paper_order_modify(user_id=USER, order_id="999", price=D("1"))
    with pytest.raises(InputRejected, match="unknown order"):
        paper_order_cancel(user_id=USER, order_id="999")


def test_ioc_limit_without_match_cancelled(nifty):
    order = place(order_type="LIMIT", price=D("19000"), validity="IOC")
    assert order.status == OrderStatus.CANCELLED


# --- P&L ----------------------------------------------------------------------------------------


def test_round_trip_realises_pnl(nifty):
    place(quantity=150)
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("20100"))
    place(side="SELL", quantity=150)
    pos = position()
    assert (pos.quantity, pos.realised_pnl) == (0, D("15000.00"))
    detail = funds()
    assert (detail.used, detail.unrealised_pnl, detail.capital) == (D("0.00"), D("0.00"), D("1015000.00"))
    assert detail.available == D("1015000.00")


def test_crossing_zero_realises_closed_part_and_opens_rest(nifty):
    place(quantity=75)
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("19900"))
    place(side="SELL", quantity=225)
    pos = position()
    assert (pos.quantity, pos.average_price, pos.realised_pnl) == (-150, D("19900"), D("-7500.00"))


def test_average_price_on_increase(nifty):
    place(quantity=75)
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("20100"))
    place(quantity=75)
    assert position().average_price == D("20050")


# --- Input errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbol": "NIFTY99JANFUT"}, "unknown instrument"),
        ({"user_id": "NOBODY"}, "unknown paper account"),
        ({"quantity": 0}, "positive whole number"),
        ({"quantity": -75}, "positive whole number"),
        ({"quantity": 50}, "not a multiple of the lot size 75"),
        ({"quantity": 1875}, "exceeds the freeze quantity 1800"),
        ({"order_type": "LIMIT"}, "need a positive price"),
        ({"order_type": "LIMIT", "price": D("-5")}, "need a positive price"),
        ({"order_type": "LIMIT", "price": D("19900.03")}, "multiple of tick size"),
        ({"order_type": "SL", "price": D("20100")}, "need a positive trigger price"),
        ({"order_type": "SL-M"}, "need a positive trigger price"),
        ({"order_type": "SL", "price": D("20000"), "trigger_price": D("20100")}, "lower than or equal"),
        ({"product": "CNC"}, "Product CNC is not allowed"),
        ({"side": "HOLD"}, "transaction type must be one of"),
        ({"order_type": "STOP"}, "order type must be one of"),
        ({"exchange": "NSE", "symbol": "NIFTY 50"}, "index and cannot be traded"),
        ({"tag": "x" * 21}, "at most 20 characters"),
        ({"variety": "amo"}, "not supported"),
    ],
)
def test_place_input_errors_raise_and_store_nothing(nifty, kwargs, message):
    symbol = kwargs.pop("symbol", FUT)
    with pytest.raises(InputRejected, match=message):
        place(symbol, **kwargs)
    assert PaperOrder.objects.count() == 0
    assert PaperAccount.objects.get(pk=nifty.pk).order_seq == 0


def test_equity_products_and_margins(nifty):
    EquityFactory()
    with pytest.raises(InputRejected, match="Product NRML is not allowed"):
        place("INFY", exchange="NSE", quantity=10)
    place("INFY", exchange="NSE", quantity=10, product="CNC")
    place("INFY", exchange="NSE", quantity=10, product="MIS")
    assert funds().margin.equity == D("15000.00") + D("3000.00")


def test_market_order_needs_a_price(nifty):
    PaperInstrumentFactory(tradingsymbol="NIFTY26JANFUT", last_price=D("0"))
    with pytest.raises(InputRejected, match="no last price"):
        place("NIFTY26JANFUT")


def test_order_ids_are_unique_digit_strings(nifty):
    ids = [place(order_type="LIMIT", price=D("19000")).order_id for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(i.isdigit() and len(i) >= 15 for i in ids)


@override_settings(PAPER_FUTURES_MARGIN_RATE="0.2")
def test_margin_rate_from_settings(nifty):
    place()
    assert funds().used == D("300000.00")


# --- Random walk --------------------------------------------------------------------------------


def test_random_walk_bounded_and_options_follow_underlying(nifty):
    paper_random_walk(seed=7, max_step_pct=D("1"), steps=1)
    index = PaperInstrument.objects.get(tradingsymbol="NIFTY 50")
    future = PaperInstrument.objects.get(tradingsymbol=FUT)
    call = PaperInstrument.objects.get(tradingsymbol=CALL)
    put = PaperInstrument.objects.get(tradingsymbol=PUT)
    assert abs(index.last_price - D("20000")) <= D("200")
    assert index.last_price != D("20000")
    assert abs(future.last_price / index.last_price - 1) < D("0.0001")  # future follows the spot
    up = index.last_price > D("20000")
    assert (call.last_price > D("200")) == up
    assert (put.last_price < D("150")) == up


def test_random_walk_is_reproducible_with_a_seed(nifty):
    paper_random_walk(seed=3, max_step_pct=D("0.5"), steps=5)
    first = dict(PaperInstrument.objects.values_list("tradingsymbol", "last_price"))
    PaperInstrument.objects.filter(tradingsymbol="NIFTY 50").update(last_price=D("20000"))
    PaperInstrument.objects.filter(tradingsymbol=FUT).update(last_price=D("20000"))
    PaperInstrument.objects.filter(tradingsymbol=CALL).update(last_price=D("200"))
    PaperInstrument.objects.filter(tradingsymbol=PUT).update(last_price=D("150"))
    paper_random_walk(seed=3, max_step_pct=D("0.5"), steps=5)
    assert dict(PaperInstrument.objects.values_list("tradingsymbol", "last_price")) == first


def test_random_walk_fills_resting_orders(nifty):
    order = place(order_type="LIMIT", price=D("19999.95"))
    paper_price_set(exchange="NFO", tradingsymbol=FUT, price=D("20000.05"))
    result = paper_random_walk(seed=1, max_step_pct=D("2"), steps=20)
    order.refresh_from_db()
    assert order.status == OrderStatus.COMPLETE
    assert order.order_id in [o.order_id for o in result.orders]
