"""Shared set-up for the dashboard tests: the §3.6 paper desk after one replicated master entry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from brokers.paper.services import paper_order_place
from lab.demo import FUT, Desk, build_desk
from replication.orchestrator import Orchestrator


@contextmanager
def orchestrator() -> Iterator[Orchestrator]:
    orch = Orchestrator(holder="dashboard-tests", workers=0)
    try:
        yield orch
    finally:
        orch.close()


def replicate_entry(desk: Desk, orch: Orchestrator, *, quantity: int = 150) -> None:
    """Baseline tick, master BUY `quantity` of the future, the tick that copies it, a settling tick."""
    orch.run_tick()
    desk.place("BUY", FUT, quantity)
    orch.run_tick()
    orch.run_tick()


def close_by_hand(user: str, quantity: int, *, side: str = "SELL", symbol: str = FUT) -> None:
    """A trade the child makes itself on the paper exchange (the engine did not place it)."""
    paper_order_place(
        user_id=user,
        exchange="NFO",
        tradingsymbol=symbol,
        side=side,
        quantity=quantity,
        product="NRML",
        order_type="MARKET",
    )


__all__ = ["FUT", "build_desk", "close_by_hand", "orchestrator", "replicate_entry"]
