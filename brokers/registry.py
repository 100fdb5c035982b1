"""Which client serves an account: a factory per broker kind, replaceable in tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from brokers.base import BrokerClient


@dataclass(frozen=True, slots=True)
class BrokerCredentials:
    """What an adapter needs to act for one account. Plaintext: never log or persist it."""

    broker: str
    user_id: str
    api_key: str = ""
    access_token: str = ""
    proxy_url: str = ""

    def __repr__(self) -> str:  # never show secrets in tracebacks or logs
        return f"BrokerCredentials(broker={self.broker!r}, user_id={self.user_id!r})"


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
    raise UnknownBroker(f"unknown broker {broker!r}")


def build_client(creds: BrokerCredentials) -> BrokerClient:
    factory = _factories.get(creds.broker) or _default_factory(creds.broker)
    return factory(creds)
