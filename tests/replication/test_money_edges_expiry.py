"""Issue 11 defect 13: the paper exchange refuses orders in expired contracts (as Kite does: they
are gone from its instrument dump), and lists, serves and seeds live contracts first."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from brokers.errors import InputRejected
from brokers.paper.client import PaperBroker
from brokers.paper.models import IST, PaperInstrument, PaperOrder
from brokers.paper.seeding import current_monthly_expiry, future_symbol
from brokers.paper.services import paper_instruments_seed, paper_order_place, paper_price_set
from brokers.types import InstrumentKey, OrderRequest, OrderType, Product, Side
from tests.engine_helpers import FUT
from tests.paper_factories import PaperAccountFactory, PaperInstrumentFactory

pytestmark = pytest.mark.django_db

OLD_FUT = "NIFTY24DECFUT"


def _today():
    return timezone.localdate(timezone=IST)


def _expired_future(**overrides) -> PaperInstrument:
    """A NIFTY future whose expiry was yesterday (IST), still priced."""
    return PaperInstrumentFactory(
        tradingsymbol=OLD_FUT, expiry=_today() - timedelta(days=1), last_price=Decimal("19000"), **overrides
    )


def test_money_edges_expired_contract_order_refused_by_paper_exchange():
    """Issue 11 defect 13: an order in a contract that expired yesterday is refused (InputRejected,
    nothing stored) through the service and the paper client; the live contract still trades."""
    PaperAccountFactory(user_id="EXP1")
    _expired_future()
    live = PaperInstrumentFactory(tradingsymbol="NIFTYLIVEFUT", expiry=_today())  # expires today: live

    with pytest.raises(InputRejected, match="expired"):
        paper_order_place(
            user_id="EXP1",
            exchange="NFO",
            tradingsymbol=OLD_FUT,
            side="BUY",
            quantity=75,
            product="NRML",
            order_type="MARKET",
        )
    with pytest.raises(InputRejected, match="expired"):
        PaperBroker("EXP1").place_order(
            OrderRequest(
                exchange="NFO",
                tradingsymbol=OLD_FUT,
                side=Side.BUY,
                quantity=75,
                product=Product.NRML,
                order_type=OrderType.MARKET,
            )
        )
    assert not PaperOrder.objects.filter(tradingsymbol=OLD_FUT).exists()

    order = paper_order_place(
        user_id="EXP1",
        exchange="NFO",
        tradingsymbol=live.tradingsymbol,
        side="BUY",
        quantity=75,
        product="NRML",
        order_type="MARKET",
    )
    assert order.status == "COMPLETE"


def test_money_edges_engine_replicates_nothing_in_an_expired_contract(desk, orch):
    """Issue 11 defect 13: the master cannot buy an expired contract on the paper exchange, so no
    child order in it reaches the exchange; the desk's own (live) future still replicates."""
    _expired_future()
    orch.run_tick()

    with pytest.raises(InputRejected):
        desk.place("BUY", OLD_FUT, 150)
    desk.place("BUY", FUT, 150)
    orch.run_tick()

    assert not PaperOrder.objects.filter(tradingsymbol=OLD_FUT).exists()
    assert desk.positions(FUT)["C2"] > 0


def test_money_edges_paper_command_lists_live_contracts_first_and_marks_expired():
    """Issue 11 defect 13: `paper instruments` lists the live future before the expired one (which
    sorts first by expiry date) and marks the expired one; `paper order` in it is a one-line error."""
    PaperAccountFactory(user_id="EXP2")
    _expired_future()
    PaperInstrumentFactory(tradingsymbol="NIFTYLIVEFUT", expiry=_today() + timedelta(days=20))
    out = io.StringIO()

    call_command("paper", "instruments", "--underlying", "NIFTY", stdout=out)

    lines = [line for line in out.getvalue().splitlines() if "FUT" in line]
    assert "NIFTYLIVEFUT" in lines[0] and "expired" not in lines[0]
    assert OLD_FUT in lines[-1] and "expired" in lines[-1]
    with pytest.raises(CommandError, match="expired"):
        call_command("paper", "order", "EXP2", "buy", f"NFO:{OLD_FUT}", "1", "--lots", stdout=io.StringIO())


def test_money_edges_paper_client_instrument_list_leaves_expired_contracts_out():
    """Issue 11 defect 13: the paper client's instrument list (the engine's look-up by symbol) is
    Kite's dump: live contracts only, so an expired one is an unknown instrument to the engine."""
    _expired_future()
    PaperInstrumentFactory(tradingsymbol="NIFTYLIVEFUT", expiry=_today())

    keys = {instrument.key for instrument in PaperBroker("ANY").instruments()}

    assert InstrumentKey("NFO", "NIFTYLIVEFUT") in keys
    assert InstrumentKey("NFO", OLD_FUT) not in keys


def test_money_edges_seed_skips_expired_fixture_contracts(tmp_path):
    """Issue 11 defect 13: seeding does not load the fixture dumps' expired contracts (2017-2018
    options) and reports them; the generated current contracts are loaded and tradable."""
    kite = tmp_path / "kite" / "fixtures"
    kite.mkdir(parents=True)
    (kite / "instruments_all.csv").write_text(
        "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
        "instrument_type,segment,exchange\n"
        "12073986,47164,BANKNIFTY18JAN23500CE,,2528.4,2018-01-25,23500.0,0.05,40,CE,NFO-OPT,NFO\n"
        "408065,1594,INFY,INFOSYS,0.0,,0.0,0.05,1,EQ,NSE,NSE\n"
    )
    with override_settings(SHARED_DIR=tmp_path):
        result = paper_instruments_seed()

    assert result.expired_skipped == 1
    assert not PaperInstrument.objects.filter(tradingsymbol="BANKNIFTY18JAN23500CE").exists()
    assert PaperInstrument.objects.filter(tradingsymbol="INFY").exists()
    current = future_symbol("NIFTY", current_monthly_expiry(_today()))
    PaperAccountFactory(user_id="EXP3")
    order = paper_order_place(
        user_id="EXP3",
        exchange="NFO",
        tradingsymbol=current,
        side="BUY",
        quantity=75,
        product="NRML",
        order_type="MARKET",
    )
    assert order.status == "COMPLETE"


def test_money_edges_resting_order_in_a_contract_that_expired_never_fills():
    """Issue 11 defect 13: a LIMIT left resting when its contract expires does not fill on a later
    price move (the contract no longer trades); a live contract's resting order still does."""
    PaperAccountFactory(user_id="EXP4")
    for symbol in (OLD_FUT, "NIFTYLIVEFUT"):
        PaperInstrumentFactory(tradingsymbol=symbol, expiry=_today(), last_price=Decimal("20000"))
    orders = {
        symbol: paper_order_place(
            user_id="EXP4",
            exchange="NFO",
            tradingsymbol=symbol,
            side="BUY",
            quantity=75,
            product="NRML",
            order_type="LIMIT",
            price=Decimal("19900"),
        )
        for symbol in (OLD_FUT, "NIFTYLIVEFUT")
    }
    PaperInstrument.objects.filter(tradingsymbol=OLD_FUT).update(expiry=_today() - timedelta(days=1))

    for symbol in (OLD_FUT, "NIFTYLIVEFUT"):
        paper_price_set(exchange="NFO", tradingsymbol=symbol, price=Decimal("19850"))

    statuses = {symbol: PaperOrder.objects.get(pk=o.pk).status for symbol, o in orders.items()}
    assert statuses == {OLD_FUT: "OPEN", "NIFTYLIVEFUT": "COMPLETE"}
