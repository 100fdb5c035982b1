"""The first wave (issue 17 item 5): with a pool of W workers, the first W children's intents are
claimed and sent before the rest are loaded and claimed, and nothing else changes: every child
gets exactly one order per intent, each child's orders stay together and in order, and the rest
pass the send gate at their own claim."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from brokers.paper.models import PaperInstrument
from brokers.types import OrderRequest
from replication.allocation import make_tag
from replication.controls import engine_control_update
from replication.engine import tick as tick_module
from replication.models import Allocation, MappingStatus, OrderMapping, ReplicationEvent
from replication.orchestrator import Orchestrator, TickResult
from replication.replicator import Replicator
from tests.engine_helpers import CALL, FUT, Desk, build_desk

pytestmark = pytest.mark.django_db(transaction=True)  # the pool's threads read what the tick wrote

# The hedge: the master buys 2 lots of the call and sells 2 lots of the future.
HEDGE = (
    {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75},
    {"C1": -75, "C2": -300, "C3": 0, "C4": -75, "C5": -75},
)
EXPECTED = {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}  # DESIGN §3.6, the master buys 2 lots


def _buy_two_lots(workers: int, *, before: Callable[[], None] | None = None) -> tuple[Desk, TickResult]:
    """The master buys 2 lots of the future, fanned out by an orchestrator with this many workers
    (`before`: run after its first, idle, tick)."""
    desk = build_desk()
    orch = Orchestrator(holder="wave", workers=workers)
    try:
        orch.run_tick()
        if before is not None:
            before()
        desk.place("BUY", FUT, 150)
        return desk, orch.run_tick()
    finally:
        orch.close()


def _claimed() -> int:
    """Intents claimed for sending and not answered yet."""
    return OrderMapping.objects.filter(status=MappingStatus.SENDING).count()


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 8])
def test_every_child_gets_exactly_one_order_whatever_the_wave(faults, workers):
    """4 children with an order: waves of 1, 2 and 3 leave a rest, 4 and 8 take them all."""
    desk, result = _buy_two_lots(workers)
    assert result.errors == []
    assert result.dispatch.sent == result.dispatch.accepted == 4
    assert desk.positions(FUT) == EXPECTED
    assert sorted(Counter(tag for _, tag in faults.places).values()) == [1, 1, 1, 1]


def test_the_first_order_goes_out_before_the_rest_is_loaded_and_claimed(faults, monkeypatch):
    """Deterministic: loading the rest waits (up to 2 s) for the first order to reach the broker.
    When it does, only the first wave (2 workers: 2 children, one intent each) is claimed."""
    first_placed = threading.Event()
    seen: list[int] = []
    lock = threading.Lock()
    planned_waves = getattr(Replicator, "_planned_waves", None)

    def record(user: str, req: OrderRequest) -> None:
        with lock:
            if not seen:
                seen.append(_claimed())
                first_placed.set()

    def load_after_the_first_order(self, **kwargs):  # type: ignore[no-untyped-def]
        first_placed.wait(2.0)
        assert planned_waves is not None
        return planned_waves(self, **kwargs)

    def before() -> None:
        faults.before_place = record
        monkeypatch.setattr(Replicator, "_planned_waves", load_after_the_first_order, raising=False)

    desk, result = _buy_two_lots(2, before=before)
    assert result.errors == []
    assert seen == [2]
    assert result.dispatch.sent == 4
    assert desk.positions(FUT) == EXPECTED


def test_a_childs_slices_stay_in_one_wave_and_in_order(faults):
    """A child whose order is split at the freeze quantity has all its slices in the wave that
    takes it, sent in slice order by one worker."""
    desk = build_desk()
    orch = Orchestrator(holder="wave", workers=2)
    try:
        # An exchange freeze of 2 lots: C2's 4 lots go as 2 slices, C1's, C4's and C5's as one.
        PaperInstrument.objects.filter(tradingsymbol=FUT).update(freeze_quantity=150)
        orch.run_tick()
        desk.place("BUY", FUT, 150)
        result = orch.run_tick()
    finally:
        orch.close()
    assert result.errors == []
    by_child: dict[int, list[int]] = {}
    for child_id, slice_no in (
        OrderMapping.objects.filter(broker_order_id__gt="")
        .order_by("sent_at", "id")
        .values_list("child_id", "slice_no")
    ):
        by_child.setdefault(child_id, []).append(slice_no)
    assert by_child
    for slices in by_child.values():
        assert slices == sorted(slices)
    placed = Counter(tag for _, tag in faults.places)
    assert set(placed.values()) == {1}
    assert len(placed) == OrderMapping.objects.filter(broker_order_id__gt="").count()
    assert any(len(slices) > 1 for slices in by_child.values())


@pytest.mark.parametrize("workers", [0, 2])
def test_a_hedges_sell_legs_follow_its_buy_legs_with_a_first_wave(faults, workers):
    desk = build_desk()
    orch = Orchestrator(holder="wave", workers=workers)
    try:
        orch.run_tick()
        desk.place("BUY", CALL, 150)
        desk.place("SELL", FUT, 150)
        result = orch.run_tick()
        orch.run_tick()  # the sell legs go once the buy legs are in the children's books
    finally:
        orch.close()
    assert result.errors == []
    assert (desk.positions(CALL), desk.positions(FUT)) == HEDGE
    assert set(Counter(tag for _, tag in faults.places).values()) == {1}


def test_a_kill_switch_thrown_while_the_first_wave_is_out_holds_the_rest(faults, monkeypatch):
    """The rest passes the send gate at its own claim: the engine halted after the first wave was
    claimed (here: just before the rest is loaded) sends nothing more, and says why."""
    planned_waves = Replicator._planned_waves

    def halt_then_load(self, **kwargs):  # type: ignore[no-untyped-def]
        engine_control_update(actor="ops", halted=True)
        return planned_waves(self, **kwargs)

    def before() -> None:
        monkeypatch.setattr(Replicator, "_planned_waves", halt_then_load)

    desk, result = _buy_two_lots(2, before=before)
    assert result.dispatch.sent == 2
    assert len(faults.places) == 2
    assert desk.positions(FUT) == {"C1": 75, "C2": 300, "C3": 0, "C4": 0, "C5": 0}
    held = OrderMapping.objects.filter(status=MappingStatus.SKIPPED, reason__startswith="stopped at send")
    assert held.count() == 2
    assert not OrderMapping.objects.filter(status=MappingStatus.PLANNED).exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_the_groups_sized_record_counts_its_first_wave_too(faults, workers):
    """The `allocation_sized` records of an allocation count every intent once: one record when
    the group is sized at once, one for its first wave and one for the rest otherwise."""
    desk, result = _buy_two_lots(workers)
    assert result.errors == []
    assert desk.positions(FUT) == EXPECTED
    sized = ReplicationEvent.objects.filter(kind="allocation_sized").order_by("id")
    total: Counter[str] = Counter()
    for e in sized:
        total.update(e.data)
    assert total == {"planned": 4, "skipped": 1}
    if workers:  # 2 workers: C1 and C2 first, then C3 (skipped, below a lot), C4 and C5
        assert [e.message.split(": ", 1)[0].split(" (", 1)[1] for e in sized] == [
            "first wave)",
            "the rest, after its first wave)",
        ]
        assert [e.data for e in sized] == [{"planned": 2}, {"planned": 2, "skipped": 1}]
    else:
        assert sized.count() == 1
    assert Allocation.objects.get().sized


@pytest.mark.parametrize(
    ("first_wave", "workers", "records"), [(0, 3, 1), (1, 3, 2), (99, 3, 2), (5, 8, 1), (99, 8, 1)]
)
def test_fanout_first_wave_sets_the_waves_size(faults, settings, first_wave, workers, records):
    """`FANOUT_FIRST_WAVE`: 0 sizes the whole group at once; a wave is at most one child per
    worker (99 with 3 workers: 3 of the 5 children first); a wave as large as the desk's 5
    eligible children is no wave at all."""
    settings.FANOUT_FIRST_WAVE = first_wave
    desk, result = _buy_two_lots(workers)
    assert result.errors == []
    assert ReplicationEvent.objects.filter(kind="allocation_sized").count() == records
    assert desk.positions(FUT) == EXPECTED


def test_a_first_wave_childs_later_intent_waits_for_its_first_orders_outcome(faults, settings, monkeypatch):
    """One worker per child at a time: an intent made for a first-wave child while the first wave
    is in flight is sent after that wave's outcomes are written, never beside its first order."""
    settings.FANOUT_FIRST_WAVE = 2
    real_size = tick_module.size_allocations
    extra: dict[str, str] = {}
    seen: list[str] = []

    def size_then_add_one(ctx, **kwargs):  # type: ignore[no-untyped-def]
        made = real_size(ctx, **kwargs)
        first = OrderMapping.objects.filter(child__broker_user_id="C1").first()
        if not kwargs.get("first_wave") and first is not None and not extra:
            # The rest's sizing also makes one more intent for C1, a first-wave child.
            extra["first"] = first.tag
            first.pk, first.slice_no, first.status = None, 1, MappingStatus.PLANNED
            first.tag = make_tag(first.allocation_id, first.child_id, 1)
            first.save()
            extra["later"] = first.tag
        return made

    def record(user: str, req: OrderRequest) -> None:
        if extra and req.tag == extra["later"]:
            seen.append(OrderMapping.objects.get(tag=extra["first"]).status)

    def before() -> None:
        monkeypatch.setattr(tick_module, "size_allocations", size_then_add_one)
        faults.before_place = record

    desk, result = _buy_two_lots(4, before=before)
    assert result.errors == []
    assert desk.positions(FUT) == {**EXPECTED, "C1": 150}  # the extra intent is C1's second lot
    assert seen == [MappingStatus.OPEN]  # its first order's outcome was written before it went
    assert sorted(Counter(tag for _, tag in faults.places).values()) == [1, 1, 1, 1, 1]


def test_a_first_wave_childs_later_intent_waits_while_its_first_is_deferred(faults, settings, monkeypatch):
    """C1's first order is refused by its rate limit (deferred, PLANNED): the intent the rest's
    sizing made for C1 is not sent ahead of it in this tick; both wait, in the order made."""
    settings.FANOUT_FIRST_WAVE = 2
    real_size = tick_module.size_allocations
    made_for_c1: list[str] = []

    def size_then_add_one(ctx, **kwargs):  # type: ignore[no-untyped-def]
        made = real_size(ctx, **kwargs)
        first = OrderMapping.objects.filter(child__broker_user_id="C1").first()
        if not kwargs.get("first_wave") and first is not None and not made_for_c1:
            first.pk, first.slice_no, first.status = None, 1, MappingStatus.PLANNED
            first.tag = make_tag(first.allocation_id, first.child_id, 1)
            first.save()
            made_for_c1.append(first.tag)
        return made

    def before() -> None:
        monkeypatch.setattr(tick_module, "size_allocations", size_then_add_one)
        faults.rate_limited_once.add("C1")

    desk, result = _buy_two_lots(4, before=before)
    assert result.errors == []
    assert made_for_c1
    assert desk.positions(FUT)["C1"] == 0
    assert list(
        OrderMapping.objects.filter(child__broker_user_id="C1")
        .order_by("id")
        .values_list("status", flat=True)
    ) == [MappingStatus.PLANNED, MappingStatus.PLANNED]
    assert made_for_c1[0] not in [tag for _, tag in faults.places]
