"""Capabilities: one record per broker kind, read by the engine instead of broker names."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime

import pytest

from brokers.base import BrokerClient
from brokers.capabilities import (
    ANGEL,
    ENGINE_TAG_MAX_LENGTH,
    KITE,
    PAPER,
    MarginCalculatorKind,
    OrderLookup,
    SessionKind,
    UnknownCapabilities,
    capabilities_for,
    engine_tag_fits_every_broker,
    register,
    unregister,
)
from brokers.kite.client import KiteBroker
from brokers.paper.client import PaperBroker


def test_each_known_broker_has_its_record():
    assert capabilities_for("kite") is KITE
    assert capabilities_for("paper") is PAPER
    assert capabilities_for("angel") is ANGEL
    with pytest.raises(UnknownCapabilities):
        capabilities_for("nobody")


def test_records_are_frozen():
    with pytest.raises(FrozenInstanceError):
        KITE.broker = "x"  # type: ignore[misc]


def test_clients_carry_their_broker_record():
    assert PaperBroker("P1").capabilities is PAPER
    kite = KiteBroker(api_key="k", access_token="t", root="http://127.0.0.1:9")
    assert kite.capabilities is KITE
    assert isinstance(kite, BrokerClient)


def test_the_engine_tag_limit_fits_every_broker():
    assert ENGINE_TAG_MAX_LENGTH == 19
    assert engine_tag_fits_every_broker()
    assert ANGEL.fits_tag("R" + "Z" * 18)
    assert not ANGEL.fits_tag("R" + "Z" * 19)
    assert KITE.fits_tag("R" + "Z" * 19)
    assert not KITE.fits_tag("R1C2-S0")
    assert not KITE.fits_tag("")


def test_facts_from_the_brokers():
    assert KITE.order_lookup is OrderLookup.BOOK_SCAN and ANGEL.order_lookup is OrderLookup.BOOK_SCAN
    assert KITE.margin.kind is MarginCalculatorKind.BASKET_HEDGED and KITE.margin.includes_positions
    assert ANGEL.margin.basket and not ANGEL.margin.includes_positions
    assert ANGEL.write_limits.per_hour == 1000 and ANGEL.book_reads.per_second == 1
    assert ANGEL.write_budget.per_hour is not None and ANGEL.write_budget.per_hour < 1000
    assert KITE.write_budget.windows() == ((1.0, 8), (60.0, 180), (86400.0, 4500))
    assert KITE.session.interactive and not ANGEL.session.interactive
    assert ANGEL.session.kind is SessionKind.HEADLESS_TOTP
    assert not PAPER.session.needs_token


@pytest.mark.parametrize(
    ("caps", "obtained", "expires"),
    [
        # Kite: the first 06:00 IST after the login (00:30 UTC)
        (KITE, datetime(2026, 12, 1, 3, 0, tzinfo=UTC), datetime(2026, 12, 2, 0, 30, tzinfo=UTC)),
        (KITE, datetime(2026, 12, 1, 0, 0, tzinfo=UTC), datetime(2026, 12, 1, 0, 30, tzinfo=UTC)),
        # Angel: midnight IST (18:30 UTC the day before)
        (ANGEL, datetime(2026, 12, 1, 3, 0, tzinfo=UTC), datetime(2026, 12, 1, 18, 30, tzinfo=UTC)),
        (ANGEL, datetime(2026, 12, 1, 19, 0, tzinfo=UTC), datetime(2026, 12, 2, 18, 30, tzinfo=UTC)),
        (PAPER, datetime(2026, 12, 1, 3, 0, tzinfo=UTC), None),
    ],
)
def test_token_expiry(caps, obtained, expires):
    assert caps.session.token_expiry(obtained) == expires


def test_register_replaces_and_unregister_restores():
    narrower = replace(KITE, tag=replace(KITE.tag, max_length=12))
    previous = register(narrower)
    try:
        assert previous is KITE
        assert capabilities_for("kite") is narrower
        assert not engine_tag_fits_every_broker()
    finally:
        unregister("kite")
    assert capabilities_for("kite") is KITE
