from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("replication", "0008_allocation_replay_after"),
    ]

    operations = [
        migrations.AddField(
            model_name="allocation",
            name="underlying",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The instrument's underlying (NIFTY for every NIFTY future and option): what an "
                "allowed/blocked instrument filter may name instead of the contract.",
                max_length=32,
            ),
        ),
    ]
