"""A throwaway database for commands that must not touch real data (`demo`, `bench_fanout`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.test.utils import setup_databases, teardown_databases


@contextmanager
def throwaway_database(label: str) -> Iterator[None]:
    """Create a fresh, migrated database named for this process, switch to it, drop it after.

    SQLite gets a file (the fan-out threads must share it; an in-memory database is per thread);
    PostgreSQL gets a database of its own name, so it never collides with a test run's.
    """
    test = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test["NAME"] = os.path.join(tempfile.gettempdir(), f"pms-{label}-{os.getpid()}.sqlite3")
    else:
        test["NAME"] = f"pms_{label}_{os.getpid()}"
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        yield
    finally:
        connection.close()
        teardown_databases(old, verbosity=0)
