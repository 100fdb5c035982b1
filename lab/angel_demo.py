"""Accounts of a demo or test desk moved onto the Angel simulator (the mixed desk of issue 15).

`move_to_angel(account, sim)` registers the account's paper user id as an Angel client code with a
simulator in this process; `angel_demo_config(user_ids)` does the same for `manage.py angel_sim
--config` in another process (`make run BROKERS=mixed`). Either way the account switches to Angel
One (accounts' broker-switch service: the old broker's credentials are forgotten) and gets the
simulator's api key, PIN and TOTP secret (encrypted at rest), so the engine trades it through
AngelBroker, the real smartapi-python SDK, HTTP and the simulator, on the same paper book.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from typing import Any

from accounts.models import Account, Broker, Ownership
from accounts.services import account_set_credentials, account_switch_broker
from brokers.simcreds import new_angel_simulator_key
from lab.angel_sim.auth import Client
from lab.angel_sim.server import AngelSim

ACTOR = "angel-demo"
# `make run BROKERS=mixed`: the master stays on the Kite simulator, these go to Angel and to the
# paper exchange (CHILD4 to Alice Blue, CHILD5 to Dhan: lab.alice_demo, lab.dhan_demo). The paper
# book behind every account is the same whatever its broker.
MIXED_ANGEL_CHILDREN = ("CHILD1", "CHILD2")
MIXED_PAPER_CHILDREN = ("CHILD3",)
SWITCH_REASON = "lab: the mixed demo desk (the same paper book behind every broker)"


def link_to_angel(account: Account, client: Client, *, store_login: bool = True, token: str = "") -> Account:
    """Switch `account` to Angel One with `client`'s credentials (PIN and TOTP secret unless
    `store_login` is False: then only the session `token`, and a dead session needs a login)."""
    account = account_switch_broker(
        account=account, broker=Broker.ANGEL, actor=ACTOR, force=True, reason=SWITCH_REASON
    )
    return account_set_credentials(
        account=account,
        actor=ACTOR,
        api_key=client.api_key,
        access_token=token or None,
        pin=client.pin if store_login else None,
        totp_secret=client.totp_secret if store_login else None,
    )


def move_to_angel(account: Account, sim: AngelSim, *, store_login: bool = True) -> Client:
    """Make `account` an Angel One account served by `sim` (in this process); returns the client."""
    client = sim.store.register(client_code=account.broker_user_id)
    token = "" if store_login else sim.store.open(client.client_code).jwt_token
    moved = link_to_angel(account, client, store_login=store_login, token=token)
    account.refresh_from_db()
    assert moved.pk == account.pk
    return client


def new_client(client_code: str) -> Client:
    return Client(
        client_code=client_code.upper(),
        pin=f"{secrets.randbelow(10000):04d}",
        totp_secret=base64.b32encode(secrets.token_bytes(20)).decode(),
        api_key=new_angel_simulator_key(),
    )


def _settled(user_id: str) -> Account:
    return Account.objects.exclude(ownership=Ownership.PENDING).get(broker_user_id=user_id)


def angel_demo_config(
    *, user_ids: Sequence[str] = MIXED_ANGEL_CHILDREN, paper_user_ids: Sequence[str] = ()
) -> dict[str, Any]:
    """Move the settled demo accounts `user_ids` to Angel One with fresh simulator credentials (and
    `paper_user_ids` to the paper exchange); returns `manage.py angel_sim --config` content serving
    the Angel ones (it holds secrets: write it 0600)."""
    for user_id in paper_user_ids:
        account_switch_broker(
            account=_settled(user_id), broker=Broker.PAPER, actor=ACTOR, force=True, reason=SWITCH_REASON
        )
    clients = []
    for user_id in user_ids:
        account = _settled(user_id)
        client = new_client(account.broker_user_id)
        link_to_angel(account, client)
        clients.append(
            {
                "client_code": client.client_code,
                "pin": client.pin,
                "totp_secret": client.totp_secret,
                "api_key": client.api_key,
            }
        )
    return {"clients": clients, "faults": []}
