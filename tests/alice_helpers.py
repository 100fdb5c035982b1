"""The Alice Blue simulator on loopback for a test, and an adapter logged in to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.test import override_settings

from brokers.alice.budget import forget_budgets
from brokers.alice.client import AliceBroker
from brokers.alice.scrip import ContractCache
from lab.alice_sim.server import AliceSim, RunningSim, start


def running_alice_sim(sim: AliceSim | None = None) -> Iterator[RunningSim]:
    """A fresh simulator, the adapter pointed at it, and the write budgets forgotten around it."""
    forget_budgets()
    running = start(sim=sim or AliceSim())
    try:
        with override_settings(ALICE_API_ROOT=running.root):
            yield running
    finally:
        running.stop()
        forget_budgets()


def alice_broker(running: RunningSim, user_id: str, **kwargs: Any) -> AliceBroker:
    """An adapter for `user_id` with a session from the vendor login (auth code -> userSession)."""
    client = running.sim.store.client(user_id) or running.sim.store.register(user_id=user_id)
    kwargs.setdefault("timeout", 5.0)
    broker = AliceBroker(
        user_id=user_id, api_key=client.app_code, root=running.root, contract_cache=ContractCache(), **kwargs
    )
    broker.vendor_login(auth_code=running.sim.store.auth_code(user_id), api_secret=client.api_secret)
    return broker
