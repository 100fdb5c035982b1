"""Broker order updates pushed to us (Kite postbacks): the service is
`replication.services.outcomes.mapping_apply_broker_update` (re-exported here for old imports)."""

from __future__ import annotations

from replication.services.outcomes import ACCEPTED, UPDATABLE, mapping_apply_broker_update

__all__ = ["ACCEPTED", "UPDATABLE", "mapping_apply_broker_update"]
