"""The replication REST API (/api/v1/): the master event log and positions, read-only."""
