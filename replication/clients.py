"""Broker clients for accounts, cached per process (one client and one rate limiter per account)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from django.db.models import Count, Max

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, Role
from brokers.base import BrokerClient
from brokers.credentials import BrokerCredentials
from brokers.registry import build_client


def credentials_for(account: Account) -> BrokerCredentials:
    """Plaintext credentials for the adapter. Raises CredentialDecryptError on a wrong key."""
    return account.broker_credentials()


# Credential columns deferred when accounts are loaded in bulk (ClientCache decrypts on a miss only).
CHILD_SECRETS = tuple(f"child__{name}" for name in Account.SECRET_FIELDS)


class ClientCache:
    """Clients keyed by account id and `updated_at`: any change to the account (a new token, a
    new proxy) saves the row, bumps `updated_at` and so builds a new client. Credentials are
    decrypted only on a miss."""

    def __init__(self) -> None:
        self._clients: dict[int, tuple[object, BrokerClient]] = {}
        self._lock = threading.Lock()
        self._children_seen: tuple[object, ...] | None = None

    def get(self, account: Account) -> BrokerClient:
        version = account.updated_at
        with self._lock:
            cached = self._clients.get(account.pk)
        if cached is not None and cached[0] == version:
            return cached[1]
        client = build_client(credentials_for(account))
        with self._lock:
            self._clients[account.pk] = (version, client)
        return client

    def warm(self, accounts: Sequence[Account]) -> None:
        """Build the missing clients for these accounts with one query for their credentials
        (they are usually loaded with credentials deferred), before a fan-out needs them."""
        with self._lock:
            missing = [a for a in accounts if (c := self._clients.get(a.pk)) is None or c[0] != a.updated_at]
        if not missing:
            return
        loaded = Account.objects.only(
            "broker", "broker_user_id", "proxy_url", "updated_at", *Account.SECRET_FIELDS
        ).in_bulk([a.pk for a in missing])
        built = {}
        for pk, account in loaded.items():
            try:
                built[pk] = (account.updated_at, build_client(credentials_for(account)))
            except CredentialDecryptError:
                continue  # reported per order when the fan-out asks for this client
        with self._lock:
            self._clients.update(built)

    def warm_children(self) -> int:
        """Build the clients of every child that has none (or an outdated one), so that the next
        master event spends its time sending, not decrypting credentials and building SDK clients.
        Called by idle ticks: one aggregate query when nothing changed since the last call.
        Returns how many children were looked at (0 when nothing changed)."""
        children = Account.objects.filter(role=Role.CHILD)
        seen = tuple(children.aggregate(n=Count("pk"), last=Max("updated_at"), top=Max("pk")).values())
        if seen == self._children_seen:
            return 0
        accounts = list(children.only("pk", "updated_at"))
        self.warm(accounts)
        self._children_seen = seen
        return len(accounts)

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()
            self._children_seen = None
