"""The master's reads in an event tick: positions and the opening group's calculator go out together.

The positions decide which events open; the calculator reads are made at the same time for the
events as they are when nothing closes, and used only when the classified opening group asks the
same. These tests run the orchestrator with a pool (reads concurrent) on the §3.6 desk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from lab.demo import MASTER
from replication.models import Allocation, AllocationKind
from replication.orchestrator import Orchestrator
from tests.engine_helpers import FUT, build_desk
from tests.faulty_broker import Faults, FaultyBroker, install

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class MasterReads:
    """What the master's client was asked, and whether positions overlapped the calculator."""

    margins: list[list[int]] = field(default_factory=list)  # quantities of each order_margins call
    margins_started: threading.Event = field(default_factory=threading.Event)
    positions_overlapped: list[bool] = field(default_factory=list)


class RecordingBroker(FaultyBroker):
    reads: MasterReads

    def positions(self):  # type: ignore[no-untyped-def]
        if self.user_id == MASTER:
            # Concurrent reads: the calculator call starts while this one is still out.
            self.reads.positions_overlapped.append(self.reads.margins_started.wait(timeout=2))
            self.reads.margins_started.clear()
        return super().positions()

    def order_margins(self, reqs):  # type: ignore[no-untyped-def]
        if self.user_id == MASTER:
            self.reads.margins.append([r.quantity for r in reqs])
            self.reads.margins_started.set()
        return super().order_margins(reqs)


@pytest.fixture
def reads() -> Iterator[MasterReads]:
    recorded = MasterReads()
    restore = install(Faults(), broker_class=RecordingBroker, reads=recorded)
    yield recorded
    restore()


@pytest.fixture
def orch() -> Iterator[Orchestrator]:
    o = Orchestrator(holder="reads", workers=4)
    yield o
    o.close()


def test_opening_tick_reads_positions_and_calculator_together_and_asks_once(reads, orch):
    desk = build_desk()
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    result = orch.run_tick()
    assert result.errors == []
    assert reads.positions_overlapped == [True]
    assert reads.margins == [[150]]  # the answer read with the positions was used
    alloc = Allocation.objects.get(kind=AllocationKind.OPEN)
    assert alloc.fraction == Decimal("0.3")
    assert desk.positions(FUT) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}


def test_crossing_zero_asks_the_calculator_again_for_the_opening_part_only(reads, orch):
    desk = build_desk()
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()  # fills recorded
    desk.place("SELL", FUT, 375)  # long 2 lots, sell 5: close 2, open 3 short
    result = orch.run_tick()
    assert result.errors == []
    assert reads.margins[-2:] == [[375], [225]]  # the guess (all opening), then the real group
    opening = Allocation.objects.filter(kind=AllocationKind.OPEN).order_by("-id").first()
    assert opening is not None and (opening.side, opening.master_quantity) == ("SELL", 225)
    close = Allocation.objects.get(kind=AllocationKind.CLOSE)
    assert close.exit_ratio == Decimal("1")


def test_pure_close_uses_no_calculator_answer(reads, orch):
    desk = build_desk()
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()
    asked_before = len(reads.margins)
    desk.place("SELL", FUT, 75)
    result = orch.run_tick()
    assert result.errors == []
    assert len(reads.margins) == asked_before + 1  # the guess only; a close is sized without it
    assert Allocation.objects.get(kind=AllocationKind.CLOSE).exit_ratio == Decimal("0.5")
    assert desk.positions(FUT) == {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}
