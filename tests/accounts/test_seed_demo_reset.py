"""Issue 14 item 3: the demo reset (`manage.py demo_reset`, `make demo-reset`) puts the seeded demo
desk back to the README's starting balances, so that the README's worked example (the master buys
2 lots; CHILD2 gets 4) reproduces on a second `make run`."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Account, AccountStatus
from accounts.services import account_set_status
from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument, PaperOrder, PaperPosition
from brokers.paper.seeding import paper_instruments_seed
from brokers.paper.services import paper_order_place
from replication.models import (
    Allocation,
    AllocationKind,
    Entitlement,
    MarginSnapshot,
    MasterOrder,
    OrderMapping,
    ReplicationEvent,
)
from replication.orchestrator import Orchestrator

pytestmark = pytest.mark.django_db(transaction=True)

START = {
    "MASTER1": Decimal("1000000.00"),
    "CHILD1": Decimal("500000.00"),
    "CHILD2": Decimal("2000000.00"),
    "CHILD3": Decimal("250000.00"),
    "CHILD4": Decimal("1500000.00"),
    "CHILD5": Decimal("700000.00"),
}


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _future() -> PaperInstrument:
    return (
        PaperInstrument.objects.filter(underlying="NIFTY", instrument_type=InstrumentType.FUT)
        .order_by("expiry")
        .first()
    )


def _positions(symbol: str) -> dict[str, int]:
    held = dict.fromkeys(START, 0)
    for user_id, qty in PaperPosition.objects.filter(instrument__tradingsymbol=symbol).values_list(
        "account__user_id", "quantity"
    ):
        held[user_id] = qty
    return held


def _worked_example(orchestrator: Orchestrator, symbol: str) -> dict[str, int]:
    """The README's example: the master buys 2 lots of the NIFTY future; positions after."""
    orchestrator.run_tick()  # baseline
    paper_order_place(
        user_id="MASTER1",
        exchange="NFO",
        tradingsymbol=symbol,
        side="BUY",
        quantity=2 * _future().lot_size,
        product="NRML",
        order_type="MARKET",
    )
    orchestrator.run_tick()
    orchestrator.run_tick()  # fills settle
    return _positions(symbol)


@pytest.fixture
def seeded():
    paper_instruments_seed()
    _run("seed_demo")
    return _future()


def test_demo_reset_restores_the_starting_desk_and_the_worked_example_reproduces(seeded):
    symbol = seeded.tradingsymbol
    lot = seeded.lot_size
    orchestrator = Orchestrator(holder="first-make-run", workers=0)
    first = _worked_example(orchestrator, symbol)
    assert first["CHILD2"] == 4 * lot  # as the README says
    fraction = Allocation.objects.get(kind=AllocationKind.OPEN).fraction
    account_set_status(
        account=Account.objects.get(broker_user_id="CHILD1"), status=AccountStatus.PAUSED, actor="staff:test"
    )
    PaperAccount.objects.filter(user_id="CHILD3").update(cash=Decimal("1.00"))  # spent, somehow

    # While the engine holds its lease, nothing is touched.
    with pytest.raises(CommandError, match="stop `make run` first"):
        _run("demo_reset")
    assert OrderMapping.objects.exists()
    orchestrator.close()  # Ctrl-C: the lease is handed back

    # A second `make run` without the reset keeps the traded desk, and says how to reset it.
    again = _run("seed_demo")
    assert "make demo-reset" in again
    assert _positions(symbol)["CHILD2"] == 4 * lot

    events_before = ReplicationEvent.objects.count()
    output = _run("demo_reset")

    assert "Demo desk reset: deleted" in output and "child orders" in output
    assert dict(PaperAccount.objects.filter(user_id__in=START).values_list("user_id", "cash")) == START
    assert not PaperOrder.objects.filter(account__user_id__in=START).exists()
    assert not PaperPosition.objects.filter(account__user_id__in=START).exists()
    assert not OrderMapping.objects.exists()
    assert not Allocation.objects.exists()
    assert not MasterOrder.objects.exists()
    assert not Entitlement.objects.exists()
    assert not MarginSnapshot.objects.exists()
    assert Account.objects.get(broker_user_id="CHILD1").status == AccountStatus.ACTIVE
    # The audit log keeps every row and records the reset for each demo account.
    assert ReplicationEvent.objects.count() == events_before + 6 + 1  # + CHILD1's resume
    assert ReplicationEvent.objects.filter(actor="demo_reset", message__startswith="demo reset").count() == 6
    assert "make demo-reset" not in _run("seed_demo")  # nothing traded since

    # The second `make run`: the same example gives the same result.
    second_run = Orchestrator(holder="second-make-run", workers=0)
    try:
        assert _worked_example(second_run, symbol) == first
        assert Allocation.objects.get(kind=AllocationKind.OPEN).fraction == fraction
    finally:
        second_run.close()


def test_demo_reset_leaves_other_accounts_alone(seeded):
    """A paper account outside the demo desk keeps its cash and its book."""
    PaperAccount.objects.create(user_id="OTHER", cash=Decimal("777777.00"))
    for user_id in ("MASTER1", "OTHER"):
        paper_order_place(
            user_id=user_id,
            exchange="NFO",
            tradingsymbol=seeded.tradingsymbol,
            side="BUY",
            quantity=seeded.lot_size,
            product="NRML",
            order_type="MARKET",
        )
    _run("demo_reset")
    assert PaperAccount.objects.get(user_id="OTHER").cash == Decimal("777777.00")
    assert sorted(Account.objects.values_list("broker_user_id", flat=True)) == sorted(START)
    assert PaperAccount.objects.get(user_id="MASTER1").cash == START["MASTER1"]
    assert list(PaperPosition.objects.values_list("account__user_id", "quantity")) == [
        ("OTHER", seeded.lot_size)
    ]
    assert PaperOrder.objects.filter(account__user_id="OTHER").count() == 1
