"""A group whose first wave went out while the rest failed to be sized (a lease lost, a database
error, a crash) is finished by the next tick *before* that tick applies the master's changes to
the group: every child ends as if the group had been sized at once (a differential check against
`FANOUT_FIRST_WAVE=0`)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from brokers.paper.services import paper_order_cancel, paper_order_modify
from lab.demo import MASTER
from replication.allocation import commit as commit_module
from replication.controls import engine_control_update
from replication.models import Allocation, OrderMapping
from replication.orchestrator import Orchestrator
from replication.services import allocation_approve, allocation_reject
from tests.engine_helpers import CALL, FUT, Desk, build_desk

pytestmark = pytest.mark.django_db(transaction=True)  # the pool's threads read what the tick wrote

Change = Callable[[Desk, str], None]
# What the children end with when the group is sized at once (FANOUT_FIRST_WAVE=0), as measured:
# the master's cut to 1 lot leaves C2 with 2 of its 4 lots and C1, C4, C5 with none; a moved limit
# moves every child's; a cancel cancels every child's.
EXPECTED: dict[str, dict[str, object]] = {
    "_cut_to_one_lot": {
        "children": {
            "C1": [("cancelled", 75, "19000.00")],
            "C2": [("open", 150, "19000.00")],
            "C4": [("cancelled", 75, "19000.00")],
            "C5": [("cancelled", 75, "19000.00")],
        },
        "open": [("C2", 150, "19000.00")],
    },
    "_move_the_limit": {
        "children": {
            "C1": [("open", 75, "19100.00")],
            "C2": [("open", 300, "19100.00")],
            "C4": [("open", 75, "19100.00")],
            "C5": [("open", 75, "19100.00")],
        },
        "open": [
            ("C1", 75, "19100.00"),
            ("C2", 300, "19100.00"),
            ("C4", 75, "19100.00"),
            ("C5", 75, "19100.00"),
        ],
    },
    "_cancel": {
        "children": {
            "C1": [("cancelled", 75, "19000.00")],
            "C2": [("cancelled", 300, "19000.00")],
            "C4": [("cancelled", 75, "19000.00")],
            "C5": [("cancelled", 75, "19000.00")],
        },
        "open": [],
    },
}


def _fail_the_rests_commit_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The commit that marks a group sized (its rest, after a first wave) fails once: it stands
    in for a lost lease or a database error while the first wave is out."""
    real_commit = commit_module.intents_commit
    failed: list[bool] = []

    def commit_failing_once(**kwargs):  # type: ignore[no-untyped-def]
        if not failed:
            failed.append(True)
            raise RuntimeError("the rest's commit failed")
        return real_commit(**kwargs)

    monkeypatch.setattr(commit_module, "intents_commit", commit_failing_once)


def _cut_to_one_lot(desk: Desk, order_id: str) -> None:
    paper_order_modify(user_id=MASTER, order_id=order_id, quantity=75)


def _move_the_limit(desk: Desk, order_id: str) -> None:
    paper_order_modify(user_id=MASTER, order_id=order_id, price=Decimal("19100"))


def _cancel(desk: Desk, order_id: str) -> None:
    paper_order_cancel(user_id=MASTER, order_id=order_id)


def _children_orders(first_wave: int, change: Change, settings, monkeypatch, fail_rest: bool) -> dict:  # type: ignore[no-untyped-def]
    """The master places a resting LIMIT buy of 2 lots; (with `fail_rest`) the rest of the group
    fails to commit once; the master changes its order; two more ticks. What each child's
    intents are then: (status, quantity, price) by child, in order."""
    settings.FANOUT_FIRST_WAVE = first_wave
    desk = build_desk()
    orch = Orchestrator(holder="resume", workers=2)
    try:
        orch.run_tick()
        if fail_rest:
            _fail_the_rests_commit_once(monkeypatch)
        order_id = desk.place("BUY", FUT, 150, order_type="LIMIT", price=Decimal("19000"))
        first = orch.run_tick()
        assert bool(first.errors) == fail_rest
        change(desk, order_id)
        for _ in range(2):
            assert orch.run_tick().errors == []
    finally:
        orch.close()
    out: dict[str, list[tuple[str, int, str]]] = {}
    for user, status, quantity, price in (
        OrderMapping.objects.filter(quantity__gt=0)
        .order_by("child__broker_user_id", "id")
        .values_list("child__broker_user_id", "status", "quantity", "price")
    ):
        out.setdefault(user, []).append((status, quantity, f"{price:.2f}"))
    return {"children": out, "open": sorted(_open_at_exchange(desk))}


def _open_at_exchange(desk: Desk) -> list[tuple[str, int, str]]:
    from brokers.paper.models import PaperOrder

    return [
        (user, quantity, f"{price:.2f}")
        for user, quantity, price in PaperOrder.objects.filter(
            account__user_id__in=list(desk.children), status="OPEN"
        ).values_list("account__user_id", "quantity", "price")
    ]


@pytest.mark.parametrize("change", [_cut_to_one_lot, _move_the_limit, _cancel])
@pytest.mark.parametrize(("first_wave", "fail_rest"), [(0, False), (2, True)])
def test_a_rest_left_unsized_ends_as_if_sized_at_once(
    faults, settings, monkeypatch, change, first_wave, fail_rest
):
    got = _children_orders(first_wave, change, settings, monkeypatch, fail_rest=fail_rest)
    assert got == EXPECTED[change.__name__]


def test_a_hedges_rest_sized_after_staff_rejected_its_buy_leg_sends_no_sell_leg(
    faults, settings, monkeypatch
):
    """Approval mode, a hedge (buy the call, sell the future), a first wave of two, the rest's
    commit failing once. Staff reject the buy leg before the rest is sized, then approve the sell
    leg: no child sells the future without the call that hedges it."""
    settings.FANOUT_FIRST_WAVE = 2
    desk = build_desk()
    orch = Orchestrator(holder="resume", workers=2)
    try:
        orch.run_tick()
        engine_control_update(actor="ops", approval_mode=True)
        _fail_the_rests_commit_once(monkeypatch)
        desk.place("BUY", CALL, 150)
        desk.place("SELL", FUT, 150)
        assert orch.run_tick().errors  # the rest of the group failed to commit
        buy = Allocation.objects.get(side="BUY")
        sell = Allocation.objects.get(side="SELL")
        allocation_reject(allocation=buy, actor="ops", reason="not this call")
        orch.run_tick()  # the rest is sized: the sell leg alone is pending
        allocation_approve(allocation=Allocation.objects.get(pk=sell.pk), actor="ops")
        for _ in range(3):
            orch.run_tick()
    finally:
        orch.close()
    assert desk.positions(FUT) == dict.fromkeys(desk.children, 0)
    assert not [tag for _, tag in faults.places]
    assert set(OrderMapping.objects.filter(allocation=sell).values_list("wave", flat=True)) == {1}
