"""`manage.py sync_alert_schedules`: create or update the alert scanner's django-q2 schedule."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from replication.alerts.tasks import alerts_sync_schedules


class Command(BaseCommand):
    help = "Create or update the alert scanner's schedule (every minute; it scans every few seconds)."

    def handle(self, *args: Any, **options: Any) -> None:
        for name in alerts_sync_schedules():
            self.stdout.write(f"schedule ready: {name}")
