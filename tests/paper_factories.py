"""factory-boy factories for the paper exchange, priced for the DESIGN §3.6 worked example.

NIFTY at 20,000.00 (index and future, lot 75), the 20000 call at 200.00 and put at 150.00.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import factory

from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument

# Far ahead: the paper exchange refuses orders in a contract that has expired (issue 11 defect 13).
EXPIRY = date(2099, 12, 29)


class PaperAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PaperAccount
        django_get_or_create = ("user_id",)

    user_id = factory.Sequence(lambda n: f"PX{n:04d}")
    cash = Decimal("1000000.00")


class PaperInstrumentFactory(factory.django.DjangoModelFactory):
    """A NIFTY future by default."""

    class Meta:
        model = PaperInstrument
        django_get_or_create = ("exchange", "tradingsymbol")

    exchange = "NFO"
    tradingsymbol = "NIFTY25DECFUT"
    instrument_token = factory.Sequence(lambda n: 900_000 + n)
    name = "NIFTY"
    underlying = "NIFTY"
    instrument_type = InstrumentType.FUT
    segment = "NFO-FUT"
    lot_size = 75
    tick_size = Decimal("0.05")
    expiry = EXPIRY
    strike = Decimal("0")
    last_price = Decimal("20000.00")
    freeze_quantity = 1800


class NiftyIndexFactory(PaperInstrumentFactory):
    exchange = "NSE"
    tradingsymbol = "NIFTY 50"
    instrument_type = InstrumentType.INDEX
    segment = "INDICES"
    name = "NIFTY 50"
    lot_size = 0
    expiry = None
    freeze_quantity = None


class NiftyOptionFactory(PaperInstrumentFactory):
    """The NIFTY 20000 call at 200.00 (pass instrument_type=PE for the put)."""

    instrument_type = InstrumentType.CE
    strike = Decimal("20000")
    segment = "NFO-OPT"
    tradingsymbol = factory.LazyAttribute(lambda o: f"NIFTY25DEC{o.strike:.0f}{o.instrument_type}")
    last_price = Decimal("200.00")


class EquityFactory(PaperInstrumentFactory):
    exchange = "NSE"
    tradingsymbol = "INFY"
    name = "INFOSYS"
    underlying = "INFY"
    instrument_type = InstrumentType.EQ
    segment = "NSE"
    lot_size = 1
    expiry = None
    last_price = Decimal("1500.00")
    freeze_quantity = None
