"""Fixtures and helpers for the REST API tests: users with tokens, clients, seeded rows, a fake broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from accounts.api.tokens.services import token_issue
from accounts.models import Account
from brokers import registry
from brokers.types import Funds, Position, Product
from replication.models import Allocation, MasterOrder, OrderMapping
from tests.factories import StaffFactory, UserFactory

API = "/api/v1"
API_KEY = "seededapikey7788"
API_SECRET = "seededapisecret1234567"
ACCESS_TOKEN = "seededaccesstoken445566"
SECRETS = (API_KEY, API_SECRET, ACCESS_TOKEN)


@pytest.fixture
def fresh_throttles():
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user)[1]}")
    return client


@dataclass
class People:
    staff: Any
    alice: Any
    bob: Any
    as_staff: APIClient
    as_alice: APIClient
    as_bob: APIClient
    anonymous: APIClient


@pytest.fixture
def people(db, fresh_throttles) -> People:
    staff = StaffFactory(username="operator")
    alice = UserFactory(username="alice")
    bob = UserFactory(username="bob")
    return People(
        staff=staff,
        alice=alice,
        bob=bob,
        as_staff=token_client(staff),
        as_alice=token_client(alice),
        as_bob=token_client(bob),
        anonymous=APIClient(),
    )


def ciphertexts(account: Account) -> list[str]:
    """The stored (encrypted) credential values of an account, straight from the table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key, api_secret, access_token FROM accounts_account WHERE id = %s", [account.pk]
        )
        row = cursor.fetchone()
    return [value for value in row if value]


def seed_allocation(
    master: Account, child: Account, *, symbol: str = "NIFTY25DECFUT", filled: int = 75
) -> Allocation:
    """One master event (opening BUY) with its master order and one filled child order."""
    order = MasterOrder.objects.create(
        account=master,
        broker_order_id=f"M{Allocation.objects.count() + 1}",
        exchange="NFO",
        tradingsymbol=symbol,
        product="NRML",
        side="BUY",
        order_type="MARKET",
        quantity=150,
        status="COMPLETE",
    )
    allocation = Allocation.objects.create(
        master=master,
        group_key=f"g{order.pk}",
        kind="open",
        status="dispatched",
        exchange="NFO",
        tradingsymbol=symbol,
        product="NRML",
        side="BUY",
        master_quantity=150,
        lot_size=75,
        master_lots=2,
        master_capital=Decimal("1000000"),
        fraction=Decimal("0.15"),
    )
    allocation.master_orders.add(order)
    OrderMapping.objects.create(
        allocation=allocation,
        child=child,
        tag=f"T{allocation.pk}C{child.pk}",
        status="filled" if filled else "planned",
        exchange="NFO",
        tradingsymbol=symbol,
        product="NRML",
        side="BUY",
        lots=1,
        quantity=75,
        filled_quantity=filled,
        latency_ms=42,
        reason="sized 1 lot",
    )
    return allocation


@dataclass
class FakeBroker:
    """A broker client whose every account holds `held`; remembers the credentials it was built with."""

    held: list[Position] = field(default_factory=list)
    seen: list[registry.BrokerCredentials] = field(default_factory=list)

    def factory(self, creds: registry.BrokerCredentials) -> FakeBroker:
        self.seen.append(creds)
        return self

    def positions(self) -> list[Position]:
        return list(self.held)

    def funds(self) -> Funds:
        return Funds(used=Decimal("0"), available=Decimal("100000"))


def install_fake_broker(monkeypatch: pytest.MonkeyPatch, **quantities: int) -> FakeBroker:
    """Paper and Kite clients report NFO:<symbol> NRML positions (keyword arguments symbol=quantity)."""
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    fake = FakeBroker(
        held=[
            Position(exchange="NFO", tradingsymbol=symbol, product=Product("NRML"), quantity=quantity)
            for symbol, quantity in quantities.items()
        ]
    )
    for broker in ("paper", "kite"):
        registry.register(broker, fake.factory)
    return fake
