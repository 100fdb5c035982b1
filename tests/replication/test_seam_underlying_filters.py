"""Issue 15: allowed/blocked instrument filters name an underlying as well as one contract.

`NIFTY` (any exchange) or `NFO:NIFTY` matches every NIFTY future and option, whatever this week's
symbols are; a contract entry (`NFO:NIFTY25DECFUT`) still matches that contract only. Driven
through `Orchestrator.run_tick()` on the paper desk of DESIGN §3.6; exits are never filtered.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.paper.models import InstrumentType, PaperInstrument, PaperOrder
from lab.demo import EXPIRY
from replication.models import Allocation, MappingStatus, OrderMapping
from tests.engine_helpers import CALL, FUT

pytestmark = pytest.mark.django_db

BANK = "BANKNIFTY25DECFUT"


@pytest.fixture(autouse=True)
def banknifty(desk):
    """A BANKNIFTY future beside the desk's NIFTY contracts: 4,500 a unit, lot 30 (₹13,500 a lot)."""
    PaperInstrument.objects.create(
        exchange="NFO",
        tradingsymbol=BANK,
        instrument_token=900010,
        name="BANKNIFTY",
        underlying="BANKNIFTY",
        instrument_type=InstrumentType.FUT,
        segment="NFO-FUT",
        lot_size=30,
        expiry=EXPIRY,
        last_price=Decimal("4500"),
        freeze_quantity=900,
    )


def limit(account, **fields) -> None:
    for name, value in fields.items():
        setattr(account, name, value)
    account.save(update_fields=[*fields, "updated_at"])


def settle(orch, ticks: int = 3) -> None:
    for _ in range(ticks):
        orch.run_tick()


def held(user: str, symbol: str) -> int:
    sides = {"BUY": 1, "SELL": -1}
    return sum(
        sides[side] * qty
        for side, qty in PaperOrder.objects.filter(
            account__user_id=user, instrument__tradingsymbol=symbol, status="COMPLETE"
        ).values_list("side", "filled_quantity")
    )


def skipped(child, symbol: str) -> list[tuple[str, str]]:
    return list(
        OrderMapping.objects.filter(child=child, tradingsymbol=symbol, status=MappingStatus.SKIPPED)
        .order_by("id")
        .values_list("reason_code", "reason")
    )


def test_seam_underlying_allowed_nifty_trades_every_nifty_contract_and_skips_banknifty(desk, orch):
    c1 = desk.children["C1"]
    limit(c1, allowed_instruments=["NIFTY"])
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    desk.place("BUY", CALL, 150)
    settle(orch)
    assert (held("C1", FUT), held("C1", CALL)) == (75, 75)
    assert skipped(c1, FUT) == skipped(c1, CALL) == []

    desk.place("BUY", BANK, 300)
    settle(orch)

    assert held("C1", BANK) == 0
    assert skipped(c1, BANK) == [
        ("instrument_not_allowed", f"NFO:{BANK} is not in this child's allowed instruments")
    ]
    assert held("C2", BANK) > 0  # the others trade it
    assert set(Allocation.objects.values_list("tradingsymbol", "underlying")) == {
        (FUT, "NIFTY"),
        (CALL, "NIFTY"),
        (BANK, "BANKNIFTY"),
    }


def test_seam_underlying_blocked_nfo_nifty_skips_every_nifty_contract_not_banknifty(desk, orch):
    c4 = desk.children["C4"]
    limit(c4, blocked_instruments=["NFO:NIFTY"])
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    desk.place("BUY", CALL, 150)
    settle(orch)
    desk.place("BUY", BANK, 300)  # its own group: a blocked leg refuses its whole group
    settle(orch)

    assert (held("C4", FUT), held("C4", CALL)) == (0, 0)
    assert held("C4", BANK) > 0
    assert skipped(c4, FUT) == [("instrument_blocked", f"NFO:{FUT} is blocked for this child (NFO:NIFTY)")]
    assert [code for code, _ in skipped(c4, CALL)] == ["instrument_blocked"]  # the group's refusal
    assert skipped(c4, BANK) == []
    assert held("C2", FUT) > 0


def test_seam_underlying_on_another_exchange_or_another_contract_does_not_match(desk, orch):
    c1, c4, c5 = desk.children["C1"], desk.children["C4"], desk.children["C5"]
    limit(c1, blocked_instruments=["BFO:NIFTY"])  # another exchange's NIFTY
    limit(c4, blocked_instruments=["NFO:NIFTY25DEC20000CE"])  # one contract: the call only
    limit(c5, allowed_instruments=["NFO:NIFTY25DEC"])  # a prefix is no underlying
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    settle(orch)

    assert (held("C1", FUT), held("C4", FUT), held("C5", FUT)) == (75, 75, 0)
    assert [code for code, _ in skipped(c5, FUT)] == ["instrument_not_allowed"]


def test_seam_underlying_filters_never_stop_an_exit(desk, orch):
    c1, c4 = desk.children["C1"], desk.children["C4"]
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    settle(orch)
    assert (held("C1", FUT), held("C4", FUT)) == (75, 75)
    limit(c1, allowed_instruments=["BANKNIFTY"])
    limit(c4, blocked_instruments=["NIFTY"])

    desk.place("SELL", FUT, 150)  # master flat
    settle(orch)

    assert (held("C1", FUT), held("C4", FUT)) == (0, 0)
