"""The database cache's table (settings.CACHES): sign-in failure counts and API rate throttles,
shared by every web process. Idempotent; does nothing when the cache is Redis."""

from typing import Any

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps: Any, schema_editor: Any) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_account_ownership")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
