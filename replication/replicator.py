"""The replicator: committed intents in, broker orders out, outcomes written back in batches.

Rules (DESIGN §4.1, §4.2):
- an intent (`OrderMapping` PLANNED, unique tag) is committed before any broker call, and claimed
  (PLANNED -> SENDING) by a conditional update in a committed transaction before it is sent;
- broker calls run concurrently across children in a bounded pool, never inside a transaction;
  each child's calls go through its own rate limiter; one child's trouble never blocks another;
- a write whose outcome is unknown becomes UNKNOWN and is looked up by tag, never re-sent blindly;
  only an order proven absent (not in the book after a grace period) is sent again;
- every engine write runs in a transaction that first checks the lease epoch.

The pieces live in `replication.engine.sender`: `outcomes` (what a send yields), `write_back`,
`lookup` (follow-up and recovery), `changes` (modify and cancel), `dispatch` (claim and send).
"""

from __future__ import annotations

from replication.engine.sender.dispatch import Dispatch
from replication.engine.sender.outcomes import (
    ACCEPTED,
    MAPPING_FIELDS,
    MAX_SEND_ATTEMPTS,
    NOT_ACCEPTED,
    SEND_ERRORS,
    SEND_FIELDS,
    DispatchReport,
    Outcome,
    Shard,
    mapping_request,
    send_error_outcome,
    status_from_order,
)

__all__ = [
    "ACCEPTED",
    "MAPPING_FIELDS",
    "MAX_SEND_ATTEMPTS",
    "NOT_ACCEPTED",
    "SEND_ERRORS",
    "SEND_FIELDS",
    "DispatchReport",
    "Outcome",
    "Replicator",
    "Shard",
    "mapping_request",
    "send_error_outcome",
    "status_from_order",
]


class Replicator(Dispatch):
    """Sends committed intents for one leader (lease) and writes the outcomes back: the one send
    gate every order, modification and cancel of a child goes through."""
