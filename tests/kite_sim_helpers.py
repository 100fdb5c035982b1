"""The Kite simulator in process, and the DESIGN §3.6 desk moved onto the Kite path.

    root, stop = start_sim()                      # 127.0.0.1, an ephemeral port
    ...
    stop()

Tests that let the server thread read or write the database need
`pytest.mark.django_db(transaction=True)`: the server's threads only see committed rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from django.test import override_settings

from accounts.models import Account, Broker
from accounts.services import account_set_credentials
from brokers.kite.client import KiteBroker
from brokers.kite.instruments import InstrumentCache, shared_cache
from brokers.paper.models import PaperOrder
from lab.demo import Desk
from lab.kite_sim.auth import Session
from lab.kite_sim.server import KiteSim, RunningSim, start


def _start(sim: KiteSim | None = None, port: int = 0) -> RunningSim:
    running = start(sim=sim, port=port)
    shared_cache(running.root).clear()  # a reused port must not serve another test's instruments
    return running


def _stop(running: RunningSim) -> None:
    running.stop()
    shared_cache(running.root).clear()


def start_sim(port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve a fresh simulator on 127.0.0.1:`port` (0 = ephemeral) in a thread: (root URL, stop)."""
    running = _start(port=port)
    return running.root, lambda: _stop(running)


@contextmanager
def running_sim(sim: KiteSim | None = None) -> Iterator[RunningSim]:
    """A simulator serving for the duration of the block (richer than start_sim: `.sim` is there)."""
    running = _start(sim)
    try:
        yield running
    finally:
        _stop(running)


def sim_session(running: RunningSim, user_id: str) -> Session:
    """A fresh Kite session for the paper account `user_id`."""
    return running.sim.store.create(user_id=user_id)


def sim_broker(running: RunningSim, user_id: str, **kwargs: Any) -> KiteBroker:
    """A KiteBroker (real SDK) logged in to the simulator as `user_id`."""
    session = sim_session(running, user_id)
    kwargs.setdefault("instrument_cache", InstrumentCache())
    kwargs.setdefault("timeout", 5.0)
    return KiteBroker(
        api_key=session.api_key,
        access_token=session.access_token,
        root=running.root,
        user_id=user_id,
        **kwargs,
    )


def admin(root: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    """Call a `/_sim/...` admin route of a running simulator."""
    return requests.request(method, root + path, timeout=5, **kwargs)


@dataclass
class KiteDesk:
    desk: Desk
    running: RunningSim
    sessions: dict[str, Session]  # paper user id -> session (MASTER, C1..C5)

    @property
    def root(self) -> str:
        return self.running.root


def move_desk_to_kite(desk: Desk, running: RunningSim) -> KiteDesk:
    """Make the master and every child of `desk` Kite accounts served by the simulator.

    broker_user_id stays the paper user id, so the simulator's session maps the token to the same
    paper account; the credentials go in through the accounts service (encrypted, audited).
    """
    sessions: dict[str, Session] = {}
    accounts: list[Account] = [desk.master, *desk.children.values()]
    for account in accounts:
        user_id = account.broker_user_id
        session = sim_session(running, user_id)
        Account.objects.filter(pk=account.pk).update(broker=Broker.KITE)
        account.refresh_from_db()
        account = account_set_credentials(
            account=account,
            actor="kite-sim-test",
            api_key=session.api_key,
            api_secret=f"secret{user_id.lower()}000000",
            access_token=session.access_token,
        )
        sessions[user_id] = session
    desk.master.refresh_from_db()
    for child in desk.children.values():
        child.refresh_from_db()
    return KiteDesk(desk=desk, running=running, sessions=sessions)


def kite_settings(root: str, **extra: Any) -> override_settings:
    """Settings for the engine on the Kite path against the simulator at `root`."""
    return override_settings(KITE_API_ROOT=root, **extra)


def tag_counts(user_id: str) -> Counter[str]:
    """How many orders carry each tag in the paper account `user_id`."""
    return Counter(PaperOrder.objects.filter(account__user_id=user_id).values_list("tag", flat=True))
