"""The tokens of DRF's `authtoken` app were stored in clear and never ended: drop them.

Tokens are now knox's (hashed, expiring). On a database that never had `authtoken` this does
nothing; on an older one its table (every client's clear token) and its migration records go.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("knox", "0009_extend_authtoken_field")]

    operations = [
        migrations.RunSQL(
            sql=[
                "DROP TABLE IF EXISTS authtoken_token",
                "DELETE FROM django_migrations WHERE app = 'authtoken'",
            ],
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
