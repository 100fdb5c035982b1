"""What an adapter needs to act for one account: the one declaration of broker credentials."""

from __future__ import annotations

from dataclasses import dataclass

from brokers.simcreds import is_simulator_credential


@dataclass(frozen=True, slots=True)
class BrokerCredentials:
    """What an adapter needs to act for one account. Plaintext: never log or persist it."""

    broker: str
    user_id: str
    api_key: str = ""
    access_token: str = ""
    proxy_url: str = ""
    # Angel One's headless login (brokers.angel.session): the client's PIN and TOTP secret, where
    # the client chose to store them; without them a dead session needs a login by hand.
    pin: str = ""
    totp_secret: str = ""

    def __repr__(self) -> str:  # never show secrets in tracebacks or logs
        return f"BrokerCredentials(broker={self.broker!r}, user_id={self.user_id!r})"

    @property
    def issued_by_simulator(self) -> bool:
        return is_simulator_credential(self.api_key) or is_simulator_credential(self.access_token)
