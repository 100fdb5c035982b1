"""The accounts REST API (/api/v1/): DRF views over the account services."""
