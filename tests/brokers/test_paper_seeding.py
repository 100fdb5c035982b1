"""Instrument seeding: fixture dumps plus generated NIFTY / BANKNIFTY sets, idempotent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from brokers.paper.models import IST, InstrumentType, PaperInstrument, PaperOrder
from brokers.paper.seeding import current_monthly_expiry, future_symbol, option_symbol, weekly_expiry
from brokers.paper.services import paper_instruments_seed, paper_order_place, paper_price_set
from tests.paper_factories import PaperAccountFactory

pytestmark = pytest.mark.django_db

D = Decimal
TODAY = date(2025, 12, 3)  # a Wednesday: weekly expiry 9 Dec, monthly 30 Dec


def get(symbol: str, exchange: str = "NFO") -> PaperInstrument:
    return PaperInstrument.objects.get(exchange=exchange, tradingsymbol=symbol)


def test_expiries_are_tuesdays():
    assert weekly_expiry(TODAY) == date(2025, 12, 9)
    assert weekly_expiry(date(2025, 12, 9)) == date(2025, 12, 9)
    assert current_monthly_expiry(TODAY) == date(2025, 12, 30)
    assert current_monthly_expiry(date(2025, 12, 31)) == date(2026, 1, 27)


def test_option_symbols_weekly_and_monthly():
    assert option_symbol("NIFTY", date(2025, 12, 9), D("24000"), "CE") == "NIFTY25D0924000CE"
    assert option_symbol("NIFTY", date(2025, 10, 14), D("24000"), "PE") == "NIFTY25O1424000PE"
    assert option_symbol("NIFTY", date(2025, 12, 30), D("24000"), "CE") == "NIFTY25DEC24000CE"


def test_seed_generates_nifty_and_banknifty_sets():
    paper_instruments_seed(today=TODAY)
    nifty_index = get("NIFTY 50", "NSE")
    assert (nifty_index.instrument_type, nifty_index.underlying, nifty_index.last_price) == (
        InstrumentType.INDEX,
        "NIFTY",
        D("24000"),
    )
    assert get("NIFTY BANK", "NSE").underlying == "BANKNIFTY"
    future = get("NIFTY25DECFUT")
    assert (future.lot_size, future.freeze_quantity, future.expiry) == (75, 1800, date(2025, 12, 30))
    assert D("24000") < future.last_price < D("24300")
    bank_future = get("BANKNIFTY25DECFUT")
    assert (bank_future.lot_size, bank_future.freeze_quantity) == (35, 900)

    weekly = PaperInstrument.objects.filter(underlying="NIFTY", expiry=date(2025, 12, 9))
    assert weekly.count() == 42
    assert {i.strike for i in weekly} == {D(23500) + 50 * n for n in range(21)}
    atm_call, atm_put = get("NIFTY25D0924000CE"), get("NIFTY25D0924000PE")
    assert D("50") < atm_call.last_price < D("400")
    assert atm_call.last_price == atm_put.last_price
    assert get("NIFTY25D0923500CE").last_price > D("500")  # deep in the money
    assert get("BANKNIFTY25DEC52000CE").expiry == date(2025, 12, 30)  # BANKNIFTY: monthly only
    assert (
        PaperInstrument.objects.filter(
            underlying="BANKNIFTY", segment="NFO-OPT", expiry=date(2025, 12, 30)
        ).count()
        == 42
    )


def test_seed_loads_fixture_dumps():
    result = paper_instruments_seed(today=date(2017, 11, 1))  # the dumps' own time: their contracts live
    assert len(result.files_loaded) == 3
    assert get("INFY", "NSE").instrument_type == InstrumentType.EQ
    old_option = get("BANKNIFTY18JAN23500CE")
    assert (old_option.underlying, old_option.lot_size, old_option.strike) == ("BANKNIFTY", 40, D("23500"))
    assert get("GOLDPETAL21JUNFUT", "MCX").segment == "MCX-FUT"


def test_seed_skips_fixture_contracts_expired_before_the_seeding_date():
    """Issue 11 defect 13: the dumps' 2017-2018 contracts are not loaded on a later date."""
    result = paper_instruments_seed(today=TODAY)
    assert result.expired_skipped > 0
    assert not PaperInstrument.objects.filter(tradingsymbol="BANKNIFTY18JAN23500CE").exists()
    assert get("INFY", "NSE").instrument_type == InstrumentType.EQ


def test_seed_is_idempotent_and_keeps_prices():
    first = paper_instruments_seed(today=TODAY)
    paper_price_set(exchange="NFO", tradingsymbol="NIFTY25DECFUT", price=D("20000"))
    count = PaperInstrument.objects.count()
    second = paper_instruments_seed(today=TODAY)
    assert second.created == 0
    assert second.updated == first.created + first.updated
    assert PaperInstrument.objects.count() == count
    assert get("NIFTY25DECFUT").last_price == D("20000")


def test_seed_without_shared_fixtures_skips_them(tmp_path):
    with override_settings(SHARED_DIR=tmp_path):
        result = paper_instruments_seed(today=TODAY)
    assert result.files_loaded == ()
    assert len(result.files_missing) == 3
    assert not PaperInstrument.objects.filter(tradingsymbol="INFY").exists()
    assert PaperInstrument.objects.filter(underlying="NIFTY").count() == 44


def test_seed_reset_clears_orders_and_instruments():
    today = timezone.localdate(timezone=IST)  # orders trade on the exchange's date: a live contract
    paper_instruments_seed(today=today)
    PaperAccountFactory(user_id="PS0001")
    paper_order_place(
        user_id="PS0001",
        exchange="NFO",
        tradingsymbol=future_symbol("NIFTY", current_monthly_expiry(today)),
        side="BUY",
        quantity=75,
        product="NRML",
        order_type="MARKET",
    )
    PaperInstrument.objects.filter(tradingsymbol="NIFTY 50").update(last_price=D("25000"))
    paper_instruments_seed(today=today, reset=True)
    assert not PaperOrder.objects.exists()
    assert get("NIFTY 50", "NSE").last_price == D("24000")
