"""Neutral instrument identity: each broker's master loaded once a day; an order for an instrument
the child's broker does not list is skipped with its reason; filters take an underlying."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from brokers import registry
from brokers.capabilities import PAPER
from brokers.capabilities import register as register_capabilities
from brokers.capabilities import unregister as unregister_capabilities
from brokers.instruments import (
    LISTINGS,
    NOT_LISTED,
    ClientMaster,
    ListedInstrument,
    NeutralKey,
    _masters,
    matches_filter,
    register_master,
    same_symbology,
    trading_day,
)
from brokers.models import BrokerInstrument
from brokers.paper.client import PaperBroker
from replication.models import MappingStatus, OrderMapping
from tests.engine_helpers import CALL, FUT

pytestmark = pytest.mark.django_db

OTHER = "otherbroker"  # a broker kind naming instruments its own way, served by the paper exchange


class PartialMaster:
    """An instrument master that lists only some of the paper exchange's instruments."""

    downloads = 0

    def __init__(self, broker: str, instruments) -> None:  # type: ignore[no-untyped-def]
        self.broker = broker
        self._inner = ClientMaster(broker, instruments)

    def download(self) -> list[ListedInstrument]:
        PartialMaster.downloads += 1
        return [
            replace(i, broker_token=f"T{n}") for n, i in enumerate(self._inner.download()) if i.symbol != FUT
        ]


@pytest.fixture
def other_broker() -> Iterator[None]:
    register_capabilities(replace(PAPER, broker=OTHER, label="Other", symbology="other"))
    registry.register(OTHER, lambda creds: PaperBroker(creds.user_id))
    register_master(OTHER, PartialMaster)
    PartialMaster.downloads = 0
    LISTINGS.clear()
    yield
    LISTINGS.clear()
    _masters.pop(OTHER, None)
    registry.unregister(OTHER)
    unregister_capabilities(OTHER)


def test_symbologies():
    assert same_symbology("kite", "paper")  # both NSE-style: Kite's path needs no mapping
    assert not same_symbology("kite", "angel")
    assert not same_symbology("kite", "nobody")


def test_an_instrument_the_childs_broker_does_not_list_is_skipped_with_its_reason(desk, orch, other_broker):
    c2 = desk.children["C2"]
    type(c2).objects.filter(pk=c2.pk).update(broker=OTHER)
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()

    skipped = OrderMapping.objects.get(child=c2, quantity__gt=0)
    assert skipped.status == MappingStatus.SKIPPED
    assert skipped.reason_code == NOT_LISTED
    assert f"NFO:{FUT} is not listed at this child's broker" in skipped.reason
    # Every other child is served as before.
    assert desk.positions(FUT) == {"C1": 75, "C2": 0, "C3": 0, "C4": 75, "C5": 75}
    # The child's broker master was read and stored for the day, with its own tokens; the name it
    # lacked was looked for once more in a fresh read (never refused on a stale listing).
    assert PartialMaster.downloads == 2
    stored = BrokerInstrument.objects.get(broker=OTHER, symbol=CALL)
    assert stored.broker_token.startswith("T") and stored.trading_day == trading_day()
    assert not BrokerInstrument.objects.filter(broker=OTHER, symbol=FUT).exists()

    desk.place("BUY", CALL, 75)  # listed at the other broker: goes out
    orch.run_tick()
    orch.run_tick()
    assert desk.positions(CALL)["C2"] > 0
    assert PartialMaster.downloads == 2  # kept for the day


def test_a_listed_instrument_goes_to_the_other_broker(desk, orch, other_broker):
    c1 = desk.children["C1"]
    type(c1).objects.filter(pk=c1.pk).update(broker=OTHER)
    orch.run_tick()
    desk.place("BUY", CALL, 150)
    orch.run_tick()
    orch.run_tick()
    m = OrderMapping.objects.get(child=c1, quantity__gt=0)
    assert m.status == MappingStatus.FILLED


def test_trading_day_starts_at_0830_ist():
    assert trading_day(datetime(2026, 12, 3, 2, 59, tzinfo=UTC)) == date(2026, 12, 2)  # 08:29 IST
    assert trading_day(datetime(2026, 12, 3, 3, 0, tzinfo=UTC)) == date(2026, 12, 3)  # 08:30 IST


@pytest.mark.parametrize(
    ("entry", "matches"),
    [
        ("NFO:NIFTY25DECFUT", True),
        ("NIFTY25DECFUT", True),
        ("NFO:NIFTY", True),
        ("NIFTY", True),
        ("nifty", True),
        ("BFO:NIFTY", False),
        ("BANKNIFTY", False),
        ("NFO:NIFTY25DEC20000CE", False),
    ],
)
def test_filters_name_a_contract_or_an_underlying(entry, matches):
    assert matches_filter(entry, exchange="NFO", symbol=FUT, underlying="NIFTY") is matches


def test_listed_instruments_carry_the_neutral_key():
    listed = ListedInstrument(
        broker="angel",
        exchange="NFO",
        symbol="NIFTY25DEC20000CE",
        instrument_type="CE",
        lot_size=75,
        underlying="NIFTY",
        expiry=date(2025, 12, 30),
        strike=Decimal("20000"),
        broker_token="43919",
    )
    assert listed.key == NeutralKey("NFO", "NIFTY", "CE", date(2025, 12, 30), Decimal("20000"))
    assert listed.name == ("NFO", "NIFTY25DEC20000CE")
