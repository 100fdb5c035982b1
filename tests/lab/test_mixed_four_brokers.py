"""Issue 16 proof: the worked example (DESIGN §3.6) on a desk mixing all four brokers and paper, with
each broker as the master once.

C1 on Kite, C2 on Angel One, C3 on paper, C4 on Alice Blue, C5 on Dhan; the master on the broker
of the parameter. Each broker runs through its real SDK over HTTP to its simulator (kite_sim,
angel_sim, dhan_sim, alice_sim), all serving one paper book: the master's orders are placed there
and seen through the master's broker; the children's positions are read there. The engine is
driven by Orchestrator.run_tick().
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accounts.models import Broker
from lab.demo import FUT, Desk
from replication.orchestrator import Orchestrator
from tests.engine_helpers import build_desk
from tests.mixed_helpers import Simulators, four_simulators, placed_tags, put_on

pytestmark = pytest.mark.django_db(transaction=True)

CHILD_BROKERS = {"C1": "kite", "C2": "angel", "C3": "paper", "C4": "alice", "C5": "dhan"}


@pytest.fixture
def sims() -> Iterator[Simulators]:
    with four_simulators() as running:
        yield running


def tick(orch: Orchestrator) -> list[str]:
    """A tick and its follow-up (fills and order updates settle); the errors of both."""
    first = orch.run_tick()
    second = orch.run_tick()
    return [*first.errors, *second.errors]


@pytest.mark.parametrize("master_broker", ["kite", "angel", "dhan", "alice", "paper"])
def test_worked_example_on_a_four_broker_desk(sims: Simulators, master_broker: str) -> None:
    desk: Desk = build_desk()
    put_on(desk.master, master_broker, sims)
    for name, broker in CHILD_BROKERS.items():
        put_on(desk.children[name], broker, sims)
    assert desk.master.broker == Broker(master_broker)
    assert {n: c.broker for n, c in desk.children.items()} == {n: Broker(b) for n, b in CHILD_BROKERS.items()}

    with sims.settings():
        orch = Orchestrator(holder=f"four-brokers-{master_broker}", workers=4)
        try:
            assert orch.run_tick().errors == []  # the master's baseline

            desk.place("BUY", FUT, 150)  # step 1: 2 lots, f = 0.30
            assert tick(orch) == []
            assert desk.positions(FUT) == {"C1": 75, "C2": 300, "C3": 0, "C4": 75, "C5": 75}

            desk.place("SELL", FUT, 75)  # step 2: exit ratio 0.5
            assert tick(orch) == []
            assert desk.positions(FUT) == {"C1": 0, "C2": 150, "C3": 0, "C4": 0, "C5": 0}

            desk.place("SELL", FUT, 75)  # step 3: the master is flat, so is every child
            assert tick(orch) == []
            assert desk.positions(FUT) == {"C1": 0, "C2": 0, "C3": 0, "C4": 0, "C5": 0}
        finally:
            orch.close()

    # Every order the engine placed reached the paper book once, through the child's own broker.
    for name, (paper, engine) in placed_tags(desk).items():
        assert paper == dict.fromkeys(engine, 1), name
        assert len(engine) == {"C1": 2, "C2": 3, "C3": 0, "C4": 2, "C5": 2}[name], (name, engine)
