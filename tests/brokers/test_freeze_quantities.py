"""Freeze quantities: the table staff keep (seeded from the exchanges' published limits), the
FREEZE_QUANTITIES override (parsed with clear errors), applied to instruments whose broker has none;
the broker's own figure wins."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from brokers.freeze import freeze_table, parse_exchange_file
from brokers.models import FreezeQuantity
from brokers.types import Instrument, InstrumentKey, InstrumentType
from pms.settings import parse_freeze_quantities
from replication.instruments import InstrumentCache, with_freeze_quantity


def instrument(symbol: str, kind: InstrumentType, underlying: str, freeze: int | None = None) -> Instrument:
    return Instrument(
        exchange="NFO",
        tradingsymbol=symbol,
        instrument_token=1,
        name=underlying,
        instrument_type=kind,
        segment="NFO-FUT",
        lot_size=75,
        tick_size=Decimal("0.05"),
        expiry=datetime(2026, 12, 29, 10, 0, tzinfo=UTC),
        strike=Decimal(0),
        underlying=underlying,
        last_price=Decimal("20000"),
        freeze_quantity=freeze,
    )


@pytest.mark.parametrize(
    ("raw", "table"),
    [
        ("", {}),
        ("NIFTY=1800", {"NIFTY": 1800}),
        (" nifty = 1800 , BANKNIFTY=900,", {"NIFTY": 1800, "BANKNIFTY": 900}),
    ],
)
def test_parse_freeze_quantities_reads_the_table(raw, table):
    assert parse_freeze_quantities(raw) == table


@pytest.mark.parametrize(
    "raw", ["NIFTY", "NIFTY=", "=1800", "NIFTY=0", "NIFTY=-5", "NIFTY=1.5", "NIFTY=lots"]
)
def test_parse_freeze_quantities_refuses_what_is_not_a_positive_quantity(raw):
    with pytest.raises(ImproperlyConfigured, match="FREEZE_QUANTITIES"):
        parse_freeze_quantities(raw)


@pytest.mark.django_db
def test_with_freeze_quantity_fills_in_only_what_the_broker_left_out():
    table = {"NIFTY": 1700}
    bare = instrument("NIFTY26DECFUT", InstrumentType.FUT, "NIFTY")
    assert with_freeze_quantity(bare, table).freeze_quantity == 1700  # the override
    assert with_freeze_quantity(bare).freeze_quantity == 1800  # the staff table (seeded)
    own = instrument("NIFTY26DECFUT", InstrumentType.FUT, "NIFTY", freeze=900)
    assert with_freeze_quantity(own, table).freeze_quantity == 900  # the broker's figure wins
    other = instrument("BANKNIFTY26DECFUT", InstrumentType.FUT, "BANKNIFTY")
    assert with_freeze_quantity(other, table).freeze_quantity == 900  # from the table
    unknown = instrument("ZZZ26DECFUT", InstrumentType.FUT, "ZZZ")
    assert with_freeze_quantity(unknown, table).freeze_quantity is None
    equity = instrument("INFY", InstrumentType.EQ, "")
    assert with_freeze_quantity(equity, table) is equity


@pytest.mark.django_db
def test_the_table_is_seeded_with_the_exchanges_index_limits():
    seeded = freeze_table()
    for name in ("NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX"):
        assert seeded[name] > 0, name
    assert FreezeQuantity.objects.get(underlying="SENSEX").exchange == "BFO"
    with override_settings(FREEZE_QUANTITIES={"nifty": 1200}):
        assert freeze_table()["NIFTY"] == 1200  # the deployment's override wins over the table


@pytest.mark.django_db
def test_staff_keep_the_table_in_the_admin():
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    browser = Client()
    browser.force_login(staff)
    row = FreezeQuantity.objects.get(underlying="NIFTY")
    page = browser.get("/admin/brokers/freezequantity/")
    assert page.status_code == 200 and b"MIDCPNIFTY" in page.content
    answer = browser.post(
        f"/admin/brokers/freezequantity/{row.pk}/change/",
        {"underlying": "nifty", "exchange": "NFO", "quantity": "1500", "source": "NSE circular"},
    )
    assert answer.status_code == 302
    assert freeze_table()["NIFTY"] == 1500
    client = ListOnly([instrument("NIFTY26DECFUT", InstrumentType.FUT, "NIFTY")])
    found = InstrumentCache().get(client, InstrumentKey("NFO", "NIFTY26DECFUT"))  # type: ignore[arg-type]
    assert found is not None and found.freeze_quantity == 1500


def test_parse_exchange_file_reads_nse_qtyfreeze():
    text = 'SR.NO, SYMBOL ,VOL_FRZ_QTY\n1,RELIANCE,10000\n2, infy ,"4,800"\n\n'
    assert parse_exchange_file(text) == {"RELIANCE": 10000, "INFY": 4800}
    with pytest.raises(ValueError, match="SYMBOL and VOL_FRZ_QTY"):
        parse_exchange_file("NAME,QTY\nX,1\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_exchange_file("SYMBOL,VOL_FRZ_QTY\nX,0\n")


@pytest.mark.django_db
def test_load_freeze_quantities_command_loads_the_stock_list(tmp_path):
    path = tmp_path / "qtyfreeze.csv"
    path.write_text("SYMBOL,VOL_FRZ_QTY\nRELIANCE,10000\nNIFTY,1700\n")
    out = io.StringIO()
    call_command("load_freeze_quantities", str(path), stdout=out)
    assert "1 created, 1 updated" in out.getvalue()
    assert freeze_table()["RELIANCE"] == 10000 and freeze_table()["NIFTY"] == 1700
    path.write_text("garbage")
    with pytest.raises(CommandError):
        call_command("load_freeze_quantities", str(path))


class ListOnly:
    def __init__(self, instruments: list[Instrument]) -> None:
        self._instruments = instruments

    def instruments(self) -> list[Instrument]:
        return self._instruments


@pytest.mark.django_db
def test_instrument_cache_applies_the_configured_table():
    client = ListOnly([instrument("NIFTY26DECFUT", InstrumentType.FUT, "NIFTY")])
    with override_settings(FREEZE_QUANTITIES={"NIFTY": 1800}):
        found = InstrumentCache().get(client, InstrumentKey("NFO", "NIFTY26DECFUT"))  # type: ignore[arg-type]
    assert found is not None and found.freeze_quantity == 1800
