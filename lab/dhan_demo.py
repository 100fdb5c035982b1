"""Accounts of a demo or test desk moved onto the Dhan simulator (the mixed desk of issue 16).

`move_to_dhan(account, sim)` registers the account's paper user id as a Dhan client id with a
simulator in this process; `dhan_demo_config(user_ids)` does the same for `manage.py dhan_sim
--config` in another process. Either way the account switches to Dhan (accounts' broker-switch
service: the old broker's credentials are forgotten) and gets the simulator's api key, PIN and
TOTP secret (encrypted at rest), so the engine trades it through DhanBroker, the real dhanhq SDK,
HTTP and the simulator, on the same paper book.

The mixed demo's Dhan child is CHILD5, the worked example's C5 (total capital 7,00,000), which the
paper demo of `seed_demo` does not have: `dhan_demo_config` opens its paper account and links it
first when it is missing (`ensure_demo_child`).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from accounts.models import Account, Broker, Ownership
from accounts.services import account_link, account_set_credentials, account_switch_broker
from brokers.paper.services import paper_account_open
from brokers.simcreds import new_dhan_simulator_credential
from lab.dhan_sim.auth import Client
from lab.dhan_sim.server import DhanSim

ACTOR = "dhan-demo"
SWITCH_REASON = "lab: the mixed demo desk (the same paper book behind every broker)"
# `make run BROKERS=mixed`: the Dhan child, C5 of the worked example (DESIGN §3.6).
MIXED_DHAN_CHILDREN = ("CHILD5",)
# Demo children the mixed demo adds to seed_demo's desk: user id -> (name, paper cash).
EXTRA_DEMO_CHILDREN: dict[str, tuple[str, Decimal]] = {
    "CHILD5": ("C5 total 7,00,000", Decimal("700000.00")),
}


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


def ensure_demo_child(user_id: str) -> None:
    """Open the paper account of an extra demo child (EXTRA_DEMO_CHILDREN) and link it on paper as a
    consenting child, unless an account of that id is already settled on some broker."""
    if user_id not in EXTRA_DEMO_CHILDREN:
        return
    if Account.objects.exclude(ownership=Ownership.PENDING).filter(broker_user_id=user_id).exists():
        return
    name, cash = EXTRA_DEMO_CHILDREN[user_id]
    paper_account_open(user_id=user_id, cash=cash)
    account_link(broker=Broker.PAPER, user_id=user_id, name=name, consent=True, actor=ACTOR)


def dhan_demo_config(*, user_ids: Sequence[str] = MIXED_DHAN_CHILDREN) -> dict[str, Any]:
    """Move the settled demo accounts `user_ids` to Dhan with fresh simulator credentials (an extra
    demo child is created first, see `ensure_demo_child`); returns `manage.py dhan_sim --config`
    content serving them (it holds secrets: write it 0600)."""
    clients = []
    for user_id in user_ids:
        ensure_demo_child(user_id)
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
