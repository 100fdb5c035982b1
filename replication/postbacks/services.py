"""Kite order postbacks: verify one body and hand it to the order flow (kite/API.md §11).

Every refusal raises `PostbackRefused` and changes nothing. Nothing here logs or returns a secret.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, Broker, Ownership, Role
from brokers.kite.parse import Unsupported
from brokers.kite.postback import (
    InvalidPostback,
    checksum_valid,
    decode_postback,
    parse_order_update,
    postback_user_id,
)
from replication.services.outcomes import mapping_apply_broker_update
from replication.wakeup import wake_remote

logger = logging.getLogger(__name__)


class PostbackRefused(Exception):
    """A postback that is not accepted (bad checksum, unknown account, malformed): answer 400."""


@dataclass(frozen=True, slots=True)
class PostbackOutcome:
    account_id: int
    order_id: str
    note: str  # what was done with it, for the log and the response


def kite_postback_receive(*, body: bytes) -> PostbackOutcome:
    """Verify and apply one Kite postback body. Raises PostbackRefused, having changed nothing.

    The account is found by the payload's `user_id` among Kite accounts; the checksum is checked
    against that account's api secret. A child's update is applied to its order mapping; a master's
    update wakes the orchestrator (polling reads the master's book).
    """
    try:
        payload = decode_postback(body)
        user_id = postback_user_id(payload)
    except InvalidPostback as exc:
        raise PostbackRefused(str(exc)) from None
    except RecursionError:  # e.g. 50,000 nested arrays: Python's JSON decoder recurses per level
        raise PostbackRefused("the body is nested too deeply") from None
    # A pending claim's api secret is the claimant's own: never the one that authenticates.
    account = (
        Account.objects.filter(broker=Broker.KITE, broker_user_id=user_id)
        .exclude(ownership=Ownership.PENDING)
        .first()
    )
    if account is None:
        raise PostbackRefused(f"no Kite account {user_id}")
    try:
        api_secret = account.secret("api_secret")
    except CredentialDecryptError:
        logger.error("postback for account %s: its api secret cannot be decrypted", account.pk)
        raise PostbackRefused("the account's api secret is unreadable") from None
    if not checksum_valid(payload, api_secret=api_secret):
        logger.warning("postback for account %s refused: bad or missing checksum", account.pk)
        raise PostbackRefused("bad checksum")
    order_id = str(payload.get("order_id"))
    if account.role == Role.MASTER:
        wake_remote()
        return PostbackOutcome(account.pk, order_id, note="master order: engine woken")
    try:
        order = parse_order_update(payload)
    except Unsupported as exc:
        return PostbackOutcome(account.pk, order_id, note=f"ignored: {exc}")
    except InvalidPostback as exc:
        raise PostbackRefused(str(exc)) from None
    mapping = mapping_apply_broker_update(order=order, source="postback", child=account)
    if mapping is None:
        return PostbackOutcome(account.pk, order_id, note="no matching child order")
    return PostbackOutcome(account.pk, order_id, note=f"child order {mapping.tag} is {mapping.status}")
