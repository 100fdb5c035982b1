"""Accounts of a demo or test desk moved onto the Angel simulator (the mixed desk of issue 15).

`move_to_angel(account, sim)` registers the account's paper user id as an Angel client code with
the simulator (a PIN and a TOTP secret made up), and links the account as an Angel One account
with those credentials (encrypted at rest), so the engine trades it through AngelBroker, the real
smartapi-python SDK, HTTP and the simulator, on the same paper book.
"""

from __future__ import annotations

from accounts.models import Account, Broker
from accounts.services import account_set_credentials
from lab.angel_sim.auth import Client
from lab.angel_sim.server import AngelSim


def move_to_angel(account: Account, sim: AngelSim, *, store_login: bool = True) -> Client:
    """Make `account` an Angel One account served by `sim`; returns the simulator's client.

    `store_login=False` leaves the PIN and TOTP secret out (a client who did not store them): the
    account then has only a session token, and a dead session needs a login by hand.
    """
    client = sim.store.register(client_code=account.broker_user_id)
    Account.objects.filter(pk=account.pk).update(broker=Broker.ANGEL)
    account.refresh_from_db()
    token = "" if store_login else sim.store.open(client.client_code).jwt_token
    account_set_credentials(
        account=account, actor="angel-sim", api_key=client.api_key, access_token=token or None
    )
    if store_login:
        # No accounts service takes the PIN and TOTP secret yet (reported); the encrypted fields
        # are written as the admin form would, without an audit row.
        Account.objects.filter(pk=account.pk).update(pin=client.pin, totp_secret=client.totp_secret)
    account.refresh_from_db()
    return client
