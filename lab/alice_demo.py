"""Accounts of a demo or test desk moved onto the Alice Blue simulator (the mixed desk of issue 16).

`move_to_alice(account, sim)` registers the account's paper user id as an Alice Blue user with a
simulator in this process, logs it in the vendor way (auth code -> checksum -> userSession) and
switches the account to Alice Blue (the old broker's credentials are forgotten) with the app code,
the api secret and the session (encrypted at rest), so the engine trades it through AliceBroker,
the real Ant-A3 SDK, HTTP and the simulator, on the same paper book.
"""

from __future__ import annotations

import hashlib

from accounts.models import Account, Broker
from accounts.services import account_set_credentials, account_switch_broker
from lab.alice_sim.auth import Client
from lab.alice_sim.server import AliceSim

ACTOR = "alice-demo"
SWITCH_REASON = "lab: the mixed demo desk (the same paper book behind every broker)"


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
