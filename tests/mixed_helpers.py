"""A desk mixing all four brokers and paper (issue 16): every simulator on loopback, each account
moved onto its broker, and the engine's settings pointed at them.

    with four_simulators() as sims:
        desk = build_desk()
        put_on(desk.master, "dhan", sims)
        ...
        with sims.settings():
            orch = Orchestrator(...)

Each broker runs through its real SDK over HTTP to its simulator; every simulator serves the same
paper book, so positions are read at the paper exchange whatever the broker. Tests using it need
`pytest.mark.django_db(transaction=True)`: the simulators' threads see committed rows only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from django.test import override_settings

from accounts.models import Account
from brokers.alice.budget import forget_budgets as forget_alice_budgets
from brokers.angel.budget import forget_budgets as forget_angel_budgets
from brokers.paper.models import PaperOrder
from lab.alice_demo import move_to_alice
from lab.alice_sim.server import AliceSim
from lab.alice_sim.server import RunningSim as AliceRunning
from lab.alice_sim.server import start as start_alice
from lab.angel_demo import move_to_angel
from lab.angel_sim.server import RunningSim as AngelRunning
from lab.angel_sim.server import start as start_angel
from lab.demo import Desk
from lab.dhan_demo import move_to_dhan
from lab.dhan_sim.server import RunningSim as DhanRunning
from lab.kite_sim.server import RunningSim as KiteRunning
from replication.models import MappingStatus, OrderMapping
from tests.dhan_helpers import running_dhan_sim
from tests.kite_sim_helpers import running_sim
from tests.lab.test_angel_sim_mixed import move_to_kite

BROKERS = ("kite", "angel", "dhan", "alice", "paper")


@dataclass
class Simulators:
    kite: KiteRunning
    angel: AngelRunning
    dhan: DhanRunning
    alice: AliceRunning

    def settings(self) -> override_settings:
        """The engine's settings for this desk: each broker's root at its simulator."""
        return override_settings(
            KITE_API_ROOT=self.kite.root,
            ANGEL_API_ROOT=self.angel.root,
            DHAN_API_ROOT=self.dhan.root,
            DHAN_WS_ROOT=self.dhan.ws_root,
            ALICE_API_ROOT=self.alice.root,
        )


@contextmanager
def four_simulators() -> Iterator[Simulators]:
    """The Kite, Angel One, Dhan and Alice Blue simulators, fresh, with every write budget forgotten."""
    forget_angel_budgets()
    forget_alice_budgets()
    with ExitStack() as stack:
        angel = start_angel()
        stack.callback(angel.stop)
        alice = start_alice(sim=AliceSim())
        stack.callback(alice.stop)
        kite = stack.enter_context(running_sim())
        dhan = stack.enter_context(running_dhan_sim())
        try:
            yield Simulators(kite=kite, angel=angel, dhan=dhan, alice=alice)
        finally:
            forget_angel_budgets()
            forget_alice_budgets()


def put_on(account: Account, broker: str, sims: Simulators) -> None:
    """Make `account` (a paper account of the desk) an account of `broker` served by its simulator;
    "paper" leaves it on the paper exchange."""
    if broker == "kite":
        move_to_kite(account, sims.kite)
    elif broker == "angel":
        move_to_angel(account, sims.angel.sim)
    elif broker == "dhan":
        move_to_dhan(account, sims.dhan.sim)
    elif broker == "alice":
        move_to_alice(account, sims.alice.sim)
    elif broker != "paper":
        raise ValueError(f"unknown broker {broker!r}")
    account.refresh_from_db()


def placed_tags(desk: Desk) -> dict[str, tuple[Counter[str], set[str]]]:
    """Per child: the tags of its orders at the paper exchange (with counts), and the tags the engine
    placed for it (child orders neither failed nor skipped)."""
    out = {}
    for name, child in desk.children.items():
        engine = {
            m.tag
            for m in OrderMapping.objects.filter(child=child, quantity__gt=0)
            if m.status not in (MappingStatus.FAILED, MappingStatus.SKIPPED)
        }
        paper = Counter(PaperOrder.objects.filter(account__user_id=name).values_list("tag", flat=True))
        out[name] = (paper, engine)
    return out
