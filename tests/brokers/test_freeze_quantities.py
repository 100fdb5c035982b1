"""FREEZE_QUANTITIES: parsed with clear errors, and applied to instruments whose broker has none."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

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


def test_with_freeze_quantity_fills_in_only_what_the_broker_left_out():
    table = {"NIFTY": 1800}
    bare = instrument("NIFTY26DECFUT", InstrumentType.FUT, "NIFTY")
    assert with_freeze_quantity(bare, table).freeze_quantity == 1800
    own = instrument("NIFTY26DECFUT", InstrumentType.FUT, "NIFTY", freeze=900)
    assert with_freeze_quantity(own, table).freeze_quantity == 900  # the broker's figure wins
    other = instrument("BANKNIFTY26DECFUT", InstrumentType.FUT, "BANKNIFTY")
    assert with_freeze_quantity(other, table).freeze_quantity is None
    equity = instrument("INFY", InstrumentType.EQ, "")
    assert with_freeze_quantity(equity, table) is equity


class ListOnly:
    def __init__(self, instruments: list[Instrument]) -> None:
        self._instruments = instruments

    def instruments(self) -> list[Instrument]:
        return self._instruments


def test_instrument_cache_applies_the_configured_table():
    client = ListOnly([instrument("NIFTY26DECFUT", InstrumentType.FUT, "NIFTY")])
    with override_settings(FREEZE_QUANTITIES={"NIFTY": 1800}):
        found = InstrumentCache().get(client, InstrumentKey("NFO", "NIFTY26DECFUT"))  # type: ignore[arg-type]
    assert found is not None and found.freeze_quantity == 1800
