"""Seed the freeze-quantity table with the exchanges' published index limits.

Figures: NSE's and BSE's quantity freeze limits for index derivatives as in effect during 2025
(after NSE's lot-size revision of December 2024), as known when this was written; the exchanges
revise them, so staff check them against NSE's current `qtyfreeze` file (and BSE's circulars) and
correct them in the admin. Stock derivatives are loaded from NSE's file with
`manage.py load_freeze_quantities PATH`. Rows staff already keep are left as they are.
"""

from django.db import migrations

SOURCE = "NSE/BSE published quantity freeze limits (index derivatives, as in effect 2025)"
INDEX_LIMITS = (
    ("NIFTY", "NFO", 1800),
    ("BANKNIFTY", "NFO", 900),
    ("FINNIFTY", "NFO", 1800),
    ("MIDCPNIFTY", "NFO", 2800),
    ("NIFTYNXT50", "NFO", 600),
    ("SENSEX", "BFO", 1000),
    ("BANKEX", "BFO", 900),
)


def seed(apps, schema_editor):
    FreezeQuantity = apps.get_model("brokers", "FreezeQuantity")
    for underlying, exchange, quantity in INDEX_LIMITS:
        FreezeQuantity.objects.get_or_create(
            underlying=underlying, defaults={"exchange": exchange, "quantity": quantity, "source": SOURCE}
        )


def unseed(apps, schema_editor):
    FreezeQuantity = apps.get_model("brokers", "FreezeQuantity")
    FreezeQuantity.objects.filter(source=SOURCE).delete()


class Migration(migrations.Migration):
    dependencies = [("brokers", "0003_neutral_instruments_and_freeze")]

    operations = [migrations.RunPython(seed, unseed)]
