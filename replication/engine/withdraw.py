"""Withdraw planned intents: the service is `replication.services.intents.intents_withdraw`.

Re-exported here for the propagate stage until it imports the service.
"""

from __future__ import annotations

from replication.services.intents import intents_withdraw

__all__ = ["intents_withdraw"]
