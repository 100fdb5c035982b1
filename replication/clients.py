"""Broker clients for accounts, cached per process (one client and one rate limiter per account)."""

from __future__ import annotations

import threading

from accounts.models import Account
from brokers.base import BrokerClient
from brokers.registry import BrokerCredentials, build_client


def credentials_for(account: Account) -> BrokerCredentials:
    """Plaintext credentials for the adapter. Raises CredentialDecryptError on a wrong key."""
    return BrokerCredentials(
        broker=account.broker,
        user_id=account.broker_user_id,
        api_key=account.secret("api_key"),
        access_token=account.secret("access_token"),
        proxy_url=account.proxy_url,
    )


class ClientCache:
    """Clients keyed by account id and credential fingerprint (a new token gets a new client)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[int, int], BrokerClient] = {}
        self._lock = threading.Lock()

    def get(self, account: Account) -> BrokerClient:
        creds = credentials_for(account)
        key = (
            account.pk,
            hash((creds.broker, creds.user_id, creds.api_key, creds.access_token, creds.proxy_url)),
        )
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                for stale in [k for k in self._clients if k[0] == account.pk]:
                    del self._clients[stale]
                client = self._clients[key] = build_client(creds)
            return client

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()
