"""The benchmark's desk: the sizing measure, the accounts it seeds, the in-memory exchange and the
simulator in this process."""

from __future__ import annotations

import random
import resource
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from accounts.models import Account, Broker, CapitalMode, Role
from brokers import registry
from brokers.base import BrokerClient
from brokers.credentials import BrokerCredentials
from brokers.kite.instruments import shared_cache
from brokers.paper.client import PaperBroker
from brokers.paper.models import InstrumentType, PaperAccount, PaperInstrument
from brokers.types import Product
from lab.bench.config import (
    FUT,
    KITE_ORDER_RATE,
    MASTER_USER_ID,
    BenchConfig,
)
from lab.kite_sim.faults import OrderRateLimiter
from lab.kite_sim.server import KiteSim, RunningSim, start
from lab.memory import MemoryBroker, MemoryExchange
from replication.models import MarginSnapshot, MasterPosition
from replication.sizing import ChildProfile, Leg, plan_group, size_entries


def measure_sizing(n: int, rng: random.Random) -> float:
    """CPU milliseconds to size n children for one event (best of three)."""
    leg = Leg(
        "NFO",
        FUT,
        "NRML",
        "BUY",
        2,
        75,
        Decimal("20000"),
        order_margin=Decimal("300000"),
        freeze_quantity=1800,
    )
    kids = [
        ChildProfile(i, used=Decimal("0"), available=Decimal(rng.randrange(200_000, 5_000_000)))
        for i in range(n)
    ]
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        plan = plan_group(legs=[leg], master_capital=Decimal("1000000"), delta_u=Decimal("300000"))
        size_entries(plan, kids)
        best = min(best, (time.process_time() - t) * 1000)
    return best


@dataclass(frozen=True)
class SimSession:
    """A Kite session the simulator will accept for one paper account (never printed)."""

    user_id: str
    api_key: str
    access_token: str

    def __repr__(self) -> str:
        return f"SimSession(user_id={self.user_id!r})"


def seed_accounts(config: BenchConfig) -> list[SimSession]:
    """The instrument, the master and N children with margin snapshots; on the Kite path the
    accounts are Kite accounts with generated credentials (returned, for the simulator)."""
    PaperInstrument.objects.create(
        exchange="NFO",
        tradingsymbol=FUT,
        instrument_token=1,
        name="NIFTY",
        underlying="NIFTY",
        instrument_type=InstrumentType.FUT,
        segment="NFO-FUT",
        lot_size=75,
        last_price=Decimal("20000"),
        freeze_quantity=1800,
    )
    kite = config.exchange == "kite-sim"
    sessions: list[SimSession] = []

    def credentials(user_id: str) -> dict[str, str]:
        if not kite:
            return {}
        session = SimSession(user_id, secrets.token_hex(8), secrets.token_hex(16))
        sessions.append(session)
        return {"api_key": session.api_key, "access_token": session.access_token}

    broker = Broker.KITE if kite else Broker.PAPER
    PaperAccount.objects.create(user_id=MASTER_USER_ID, cash=Decimal("1000000"))
    master = Account.objects.create(
        broker=broker,
        broker_user_id=MASTER_USER_ID,
        role=Role.MASTER,
        display_name="bench master",
        consent_given_at=timezone.now(),
        **credentials(MASTER_USER_ID),
    )
    if not config.first_look:
        # The engine has seen the master today (flat), as for every event after the day's first.
        MasterPosition.objects.create(
            account=master, exchange="NFO", tradingsymbol=FUT, product=Product.NRML, quantity=0
        )
    capitals = [Decimal(config.rng.randrange(500_000, 5_000_000)) for _ in range(config.children)]
    PaperAccount.objects.bulk_create(
        [PaperAccount(user_id=f"B{i:05d}", cash=c) for i, c in enumerate(capitals)], batch_size=2000
    )
    now = timezone.now()
    accounts = Account.objects.bulk_create(
        [
            Account(
                broker=broker,
                broker_user_id=f"B{i:05d}",
                role=Role.CHILD,
                capital_mode=CapitalMode.TOTAL,
                consent_given_at=now,
                consent_version="bench",
                **credentials(f"B{i:05d}"),
            )
            for i in range(config.children)
        ],
        batch_size=1000,
    )
    MarginSnapshot.objects.bulk_create(
        [
            MarginSnapshot(account=a, used_margin=Decimal(0), available_margin=c, capital=c)
            for a, c in zip(accounts, capitals, strict=True)
        ],
        batch_size=2000,
    )
    return sessions


def use_memory_exchange(config: BenchConfig) -> tuple[MemoryExchange, Callable[[], None]]:
    """Children on the in-memory exchange (same latency), the master stays on the paper exchange."""
    exchange = MemoryExchange(price=Decimal("20000"), cash=Decimal("100000000"))

    def factory(creds: BrokerCredentials) -> BrokerClient:
        if creds.user_id == MASTER_USER_ID:
            return PaperBroker(creds.user_id, latency_ms=config.latency_ms)
        return MemoryBroker(creds.user_id, exchange, latency_ms=config.latency_ms)

    previous = registry.register("paper", factory)

    def restore() -> None:
        if previous is not None:
            registry.register("paper", previous)
        else:
            registry.unregister("paper")

    return exchange, restore


def raise_open_file_limit(children: int) -> None:
    """Each Kite child keeps one HTTP connection open (two sockets when the simulator runs in this
    process): raise the soft limit on open files towards the hard one if it is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * children + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# --- the simulator in this process (threads mode) ------------------------------------------------


@contextmanager
def sim_in_process(config: BenchConfig, sessions: list[SimSession]) -> Iterator[RunningSim]:
    """A simulator on 127.0.0.1 (ephemeral port) in this process, with every session registered."""
    sim = KiteSim(limiter=OrderRateLimiter(per_second=KITE_ORDER_RATE))
    for s in sessions:
        sim.store.create(user_id=s.user_id, api_key=s.api_key, access_token=s.access_token)
    sim.set_faults(latency_ms=config.latency_ms)
    running = start(sim=sim, host="127.0.0.1", port=0)
    shared_cache(running.root).clear()  # a reused port must not serve another run's instruments
    try:
        yield running
    finally:
        running.stop()
        shared_cache(running.root).clear()
