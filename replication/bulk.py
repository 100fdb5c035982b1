"""Batch sizes for bulk writes: as many rows per statement as the database's parameter limit allows."""

from __future__ import annotations

from django.db import models

# PostgreSQL accepts 65,535 bind parameters per statement; stay below it. SQLite's limit is raised
# to match at connection time (see replication.apps).
MAX_PARAMS = 60_000


def batch_size(model: type[models.Model]) -> int:
    return max(1, MAX_PARAMS // len(model._meta.concrete_fields))
