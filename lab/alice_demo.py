"""Accounts of a demo or test desk moved onto the Alice Blue simulator (the mixed desk of issue 16).

`move_to_alice(account, sim)` registers the account's paper user id as an Alice Blue user with a
simulator in this process, logs it in the vendor way (auth code -> checksum -> userSession) and
switches the account to Alice Blue (the old broker's credentials are forgotten) with the app code,
the api secret and the session (encrypted at rest), so the engine trades it through AliceBroker,
the real Ant-A3 SDK, HTTP and the simulator, on the same paper book.

`alice_demo_config(user_ids)` does the same for `manage.py alice_sim --config` in another process
(`make run BROKERS=mixed`): Alice Blue has no headless login, so the config carries each client's
`userSession` too, stored on the account before the simulator starts; the command's
`DemoClientStore` accepts those sessions as if the vendor login had made them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from accounts.models import Account, Broker, Ownership
from accounts.services import account_set_credentials, account_switch_broker
from lab.alice_sim.auth import AliceAuthError, Client, ClientStore
from lab.alice_sim.server import AliceSim

ACTOR = "alice-demo"
SWITCH_REASON = "lab: the mixed demo desk (the same paper book behind every broker)"
# `make run BROKERS=mixed`: this demo child goes to the Alice Blue simulator.
MIXED_ALICE_CHILDREN = ("CHILD4",)


def link_to_alice(account: Account, client: Client, *, user_session: str) -> Account:
    """Switch `account` to Alice Blue with `client`'s app code and secret and the vendor session."""
    account = account_switch_broker(
        account=account, broker=Broker.ALICE, actor=ACTOR, force=True, reason=SWITCH_REASON
    )
    return account_set_credentials(
        account=account,
        actor=ACTOR,
        api_key=client.app_code,
        api_secret=client.api_secret,
        access_token=user_session,
    )


def move_to_alice(account: Account, sim: AliceSim) -> Client:
    """Make `account` an Alice Blue account served by `sim` (in this process); returns the client."""
    client = sim.store.register(user_id=account.broker_user_id)
    code = sim.store.auth_code(client.user_id)  # what the login page hands the redirect URL
    checksum = hashlib.sha256(f"{client.user_id}{code}{client.api_secret}".encode()).hexdigest()
    _, session = sim.store.login(checksum)
    moved = link_to_alice(account, client, user_session=session)
    account.refresh_from_db()
    assert moved.pk == account.pk
    return client


def alice_demo_config(*, user_ids: Sequence[str] = MIXED_ALICE_CHILDREN) -> dict[str, Any]:
    """Move the settled demo accounts `user_ids` to Alice Blue with a fresh simulator app code, api
    secret and `userSession`; returns `manage.py alice_sim --config` content serving them, sessions
    included (it holds secrets: write it 0600)."""
    minting = ClientStore()  # shapes the credentials as the simulator's own login would
    clients = []
    for user_id in user_ids:
        account = Account.objects.exclude(ownership=Ownership.PENDING).get(broker_user_id=user_id)
        client = minting.register(user_id=account.broker_user_id)
        session = minting.open(client.user_id)
        link_to_alice(account, client, user_session=session)
        clients.append(
            {
                "user_id": client.user_id,
                "app_code": client.app_code,
                "api_secret": client.api_secret,
                "user_session": session,
            }
        )
    return {"clients": clients, "faults": []}


class DemoClientStore(ClientStore):
    """The simulator's client store, also accepting the sessions a demo config hands it
    (`adopt`): the vendor login made them in an earlier process. `expire` ends them too."""

    def __init__(self) -> None:
        super().__init__()
        self._adopted: dict[str, str] = {}  # userSession -> user id

    def adopt(self, *, user_id: str, user_session: str) -> None:
        if self.client(user_id) is None:
            raise ValueError(f"{user_id} is not a client of this simulator")
        self._adopted[user_session] = user_id.strip().upper()

    def authenticate(self, authorization: str | None) -> str:
        try:
            return super().authenticate(authorization)
        except AliceAuthError:
            token = (authorization or "").strip()
            if token.lower().startswith("bearer "):
                token = token[len("bearer ") :].strip()
            user_id = self._adopted.get(token) if token else None
            if user_id is None:
                raise
            return user_id

    def expire(self, *, user_id: str | None = None) -> int:
        dead = [t for t, u in self._adopted.items() if user_id is None or u == user_id.upper()]
        for token in dead:
            del self._adopted[token]
        return super().expire(user_id=user_id) + len(dead)
