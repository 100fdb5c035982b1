"""Accounts of a demo or test desk moved onto the Dhan simulator (the mixed desk of issue 16).

`move_to_dhan(account, sim)` registers the account's paper user id as a Dhan client id with a
simulator in this process; `dhan_demo_config(user_ids)` does the same for `manage.py dhan_sim
--config` in another process. Either way the account switches to Dhan (accounts' broker-switch
service: the old broker's credentials are forgotten) and gets the simulator's api key, PIN and
TOTP secret (encrypted at rest), so the engine trades it through DhanBroker, the real dhanhq SDK,
HTTP and the simulator, on the same paper book.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from typing import Any

from accounts.models import Account, Broker, Ownership
from accounts.services import account_set_credentials, account_switch_broker
from brokers.simcreds import new_dhan_simulator_credential
from lab.dhan_sim.auth import Client
from lab.dhan_sim.server import DhanSim

ACTOR = "dhan-demo"
SWITCH_REASON = "lab: the mixed demo desk (the same paper book behind every broker)"


def link_to_dhan(account: Account, client: Client, *, store_login: bool = True, token: str = "") -> Account:
    """Switch `account` to Dhan with `client`'s credentials (PIN and TOTP secret unless
    `store_login` is False: then only the access `token`, and a dead token needs a login)."""
    account = account_switch_broker(
        account=account, broker=Broker.DHAN, actor=ACTOR, force=True, reason=SWITCH_REASON
    )
    return account_set_credentials(
        account=account,
        actor=ACTOR,
        api_key=client.api_key,
        access_token=token or None,
        pin=client.pin if store_login else None,
        totp_secret=client.totp_secret if store_login else None,
    )


def move_to_dhan(account: Account, sim: DhanSim, *, store_login: bool = True) -> Client:
    """Make `account` a Dhan account served by `sim` (in this process); returns the client."""
    client = sim.store.register(client_id=account.broker_user_id)
    token = "" if store_login else sim.store.open(client.client_id).access_token
    link_to_dhan(account, client, store_login=store_login, token=token)
    account.refresh_from_db()
    return client


def new_client(client_id: str) -> Client:
    return Client(
        client_id=client_id,
        pin=f"{secrets.randbelow(1000000):06d}",
        totp_secret=base64.b32encode(secrets.token_bytes(20)).decode(),
        api_key=new_dhan_simulator_credential(),
    )


def dhan_demo_config(*, user_ids: Sequence[str]) -> dict[str, Any]:
    """Move the settled demo accounts `user_ids` to Dhan with fresh simulator credentials; returns
    `manage.py dhan_sim --config` content serving them (it holds secrets: write it 0600)."""
    clients = []
    for user_id in user_ids:
        account = Account.objects.exclude(ownership=Ownership.PENDING).get(broker_user_id=user_id)
        client = new_client(account.broker_user_id)
        link_to_dhan(account, client)
        clients.append(
            {
                "client_id": client.client_id,
                "pin": client.pin,
                "totp_secret": client.totp_secret,
                "api_key": client.api_key,
            }
        )
    return {"clients": clients, "faults": []}
