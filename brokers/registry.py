"""Which client serves an account: a factory per broker kind, replaceable in tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable

from brokers.base import BrokerClient

# Declared in brokers.credentials (which the adapters import, so the registry's lazy imports of
# them make no cycle); re-exported for the callers that build a client from credentials.
from brokers.credentials import BrokerCredentials as BrokerCredentials

ClientFactory = Callable[[BrokerCredentials], BrokerClient]
_factories: dict[str, ClientFactory] = {}


class UnknownBroker(LookupError):
    pass


def register(broker: str, factory: ClientFactory) -> ClientFactory | None:
    """Install the factory for a broker kind; returns the previous one (to restore it)."""
    previous = _factories.get(broker)
    _factories[broker] = factory
    return previous


def unregister(broker: str) -> None:
    """Back to the built-in factory for this broker kind."""
    _factories.pop(broker, None)


def _default_factory(broker: str) -> ClientFactory:
    if broker == "paper":
        from brokers.paper.client import PaperBroker

        return PaperBroker.for_credentials
    if broker == "kite":
        from brokers.kite.client import KiteBroker

        return KiteBroker.for_credentials
    if broker == "angel":
        from brokers.angel.client import AngelBroker

        return AngelBroker.for_credentials
    if broker == "alice":
        from brokers.alice.client import AliceBroker

        return AliceBroker.for_credentials
    if broker == "dhan":
        from brokers.dhan.client import DhanBroker

        return DhanBroker.for_credentials
    raise UnknownBroker(f"unknown broker {broker!r}")


def build_client(creds: BrokerCredentials) -> BrokerClient:
    factory = _factories.get(creds.broker) or _default_factory(creds.broker)
    return factory(creds)
