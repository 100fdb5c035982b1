"""Which client serves an account: a factory per broker kind, replaceable in tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from brokers.base import BrokerClient

# The simulator's credential marks live in brokers.simcreds (the Kite adapter still imports these
# two from here).
from brokers.simcreds import is_loopback_url as is_loopback_url
from brokers.simcreds import is_simulator_credential as is_simulator_credential


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

    @property
    def issued_by_simulator(self) -> bool:
        return is_simulator_credential(self.api_key) or is_simulator_credential(self.access_token)


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
