"""`manage.py paper`: a happy path, and bad input that fails with one line and changes nothing."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from brokers.paper.models import (
    OrderStatus,
    PaperAccount,
    PaperInstrument,
    PaperOrder,
    PaperPosition,
    PaperTrade,
)
from tests.paper_factories import NiftyIndexFactory, NiftyOptionFactory, PaperInstrumentFactory

pytestmark = pytest.mark.django_db

D = Decimal
USER = "PC0001"
FUT = "NFO:NIFTY25DECFUT"


def paper(*args: str) -> str:
    out = StringIO()
    call_command("paper", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def market():
    NiftyIndexFactory()
    PaperInstrumentFactory()
    NiftyOptionFactory()
    paper("open", USER, "--cash", "1000000")


def state() -> tuple:
    return (
        PaperAccount.objects.count(),
        list(PaperAccount.objects.values_list("user_id", "cash", "order_seq")),
        list(PaperOrder.objects.values_list("order_id", "status", "price", "quantity")),
        PaperPosition.objects.count(),
        PaperTrade.objects.count(),
        list(PaperInstrument.objects.order_by("pk").values_list("last_price", flat=True)),
    )


def test_paper_command_happy_path(market):
    assert "Paper account PC0001: cash 10,00,000.00" in paper("open", USER, "--cash", "5")  # keeps cash
    out = paper("order", USER, "buy", FUT, "2", "--lots")
    assert "COMPLETE: BUY 150 NFO:NIFTY25DECFUT filled @ 20,000.00" in out
    out = paper("order", USER, "sell", "nfo:nifty25decfut", "75", "--type", "LIMIT", "--price", "20100")
    order_id = out.split()[0]
    assert "OPEN" in out
    assert "MODIFIED" not in paper("modify", USER, order_id, "--price", "20200")
    assert PaperOrder.objects.get(order_id=order_id).price == D("20200")

    out = paper("price", FUT, "20200")
    assert f"{order_id} COMPLETE" in out

    funds = paper("funds", USER)
    assert "Realised P&L" in funds and "15,000.00" in funds
    lines = {line.split("  ")[0].strip(): line.split()[-1] for line in funds.splitlines()[2:]}
    assert lines["Used"] == "1,51,500.00"  # 75 left at 20,200 x 10%
    assert lines["Capital"] == "10,30,000.00"  # 15,000 realised + 15,000 unrealised

    positions = paper("positions", USER)
    assert "NFO:NIFTY25DECFUT" in positions and "75" in positions

    out = paper("order", USER, "buy", FUT, "1", "--lots", "--type", "LIMIT", "--price", "19000")
    resting = out.split()[0]
    assert "CANCELLED" in paper("cancel", USER, resting)
    book = paper("orders", USER)
    assert book.count("\n") == 5  # header, rule and three orders (last line unterminated)
    assert "CANCELLED" in book

    assert "NIFTY25DEC20000CE" in paper("instruments", "--underlying", "nifty")
    assert "step(s)" in paper("walk", "--steps", "2", "--seed", "1")


def test_paper_command_rejection_is_shown_not_raised(market):
    paper("cash", USER, "100000")
    out = paper("order", USER, "buy", FUT, "2", "--lots")
    assert "REJECTED" in out and "Insufficient funds. Required margin is 300000.00" in out


def test_paper_command_seed(market, tmp_path, settings):
    settings.SHARED_DIR = tmp_path
    out = paper("seed", "--today", "2025-12-03")
    assert "created" in out and "Skipped (not found)" in out
    # The ladder centres on the current NIFTY 50 price (20,000 here), not the default spot.
    assert PaperInstrument.objects.filter(tradingsymbol="NIFTY25D0920000CE").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("order", "NOBODY", "buy", FUT, "75"), "unknown paper account"),
        (("order", USER, "buy", "NFO:NOPE25DECFUT", "75"), "unknown instrument"),
        (("order", USER, "buy", FUT, "50"), "not a multiple of the lot size 75"),
        (("order", USER, "buy", FUT, "-75"), "quantity must be positive"),
        (("order", USER, "buy", FUT, "abc"), "quantity must be a whole number"),
        (("order", USER, "buy", FUT, "1.5", "--lots"), "quantity must be a whole number"),
        (("order", USER, "buy", "NIFTY25DECFUT", "75"), "EXCHANGE:SYMBOL"),
        (("order", USER, "buy", FUT, "75", "--type", "LIMIT"), "need a positive price"),
        (("order", USER, "buy", FUT, "75", "--type", "LIMIT", "--price", "abc"), "price must be a number"),
        (("order", USER, "buy", FUT, "75", "--type", "LIMIT", "--price", "-1"), "price must be positive"),
        (("order", USER, "buy", FUT, "75", "--type", "SL", "--price", "20100"), "trigger price"),
        (("order", USER, "buy", FUT, "75", "--product", "CNC"), "Product CNC is not allowed"),
        (("order", USER, "hold", FUT, "75"), "invalid choice"),
        (("order", USER, "buy", FUT, "75", "--type", "STOP"), "invalid choice"),
        (("price", FUT, "-5"), "price must be positive"),
        (("price", FUT, "abc"), "price must be a number"),
        (("price", FUT, "NaN"), "finite number"),
        (("price", "NFO:NOPE", "100"), "unknown instrument"),
        (("open", "PCNEW", "--cash", "-100"), "cash must not be negative"),
        (("open", "PCNEW", "--cash", "lots"), "cash must be a number"),
        (("cash", USER, "-1"), "cash must not be negative"),
        (("funds", "NOBODY"), "unknown paper account"),
        (("positions", "NOBODY"), "unknown paper account"),
        (("orders", "NOBODY"), "unknown paper account"),
        (("cancel", USER, "123"), "unknown order"),
        (("modify", USER, "123", "--price", "100"), "unknown order"),
        (("modify", USER, "123", "--qty", "x"), "quantity must be a whole number"),
        (("walk", "--steps", "0"), "steps must be positive"),
        (("walk", "--seed", "x"), "seed must be a whole number"),
        (("walk", "--max-step-pct", "150"), "between 0 and 100"),
        (("seed", "--today", "2025-13-01"), "YYYY-MM-DD"),
    ],
)
def test_paper_command_bad_input_one_line_error_nothing_changed(market, args, message):
    before = state()
    with pytest.raises(CommandError, match=message) as caught:
        paper(*args)
    assert "\n" not in str(caught.value)
    assert state() == before


def test_paper_command_modify_final_order_refused(market):
    out = paper("order", USER, "buy", FUT, "75")
    order_id = out.split()[0]
    before = state()
    with pytest.raises(CommandError, match="cannot be modified as it is complete"):
        paper("modify", USER, order_id, "--price", "19000")
    assert state() == before
    assert PaperOrder.objects.get(order_id=order_id).status == OrderStatus.COMPLETE
