"""Test helpers for account services and admin: a fake broker client installed through the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from brokers import registry
from brokers.errors import BrokerError
from brokers.types import Funds


@dataclass
class FakeBroker:
    """Answers funds() with fixed numbers (or raises `error`) and remembers the credentials it got."""

    used: Decimal = Decimal("1000")
    available: Decimal = Decimal("9000")
    error: BrokerError | None = None
    seen: list[registry.BrokerCredentials] = field(default_factory=list)

    def factory(self, creds: registry.BrokerCredentials) -> FakeBroker:
        self.seen.append(creds)
        return self

    def funds(self) -> Funds:
        if self.error is not None:
            raise self.error
        return Funds(used=self.used, available=self.available)


def install_fake_broker(monkeypatch: pytest.MonkeyPatch, *brokers: str, **kwargs: object) -> FakeBroker:
    """Register a FakeBroker for `brokers` (default: paper and kite); the registry is restored after."""
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    fake = FakeBroker(**kwargs)
    for broker in brokers or ("paper", "kite"):
        registry.register(broker, fake.factory)
    return fake
