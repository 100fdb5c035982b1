from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _raise_sqlite_parameter_limit(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Let bulk writes use SQLite's real bind-parameter limit instead of Django's 999 default."""
    if connection.vendor == "sqlite":
        import sqlite3

        limit = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        connection.features.max_query_params = min(limit, 60_000)


class ReplicationConfig(AppConfig):
    name = "replication"
    verbose_name = "Replication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from replication import checks  # noqa: F401  (registers the django-q2 configuration check)

        connection_created.connect(_raise_sqlite_parameter_limit, dispatch_uid="pms-sqlite-params")
