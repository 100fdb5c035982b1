"""`manage.py sync_schedules`: create or update the engine's django-q2 schedules (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from replication.tasks import sync_schedules


class Command(BaseCommand):
    help = "Create or update the watchdog tick, child margin refresh and reconciliation sweep schedules."

    def handle(self, *args: Any, **options: Any) -> None:
        for name in sync_schedules():
            self.stdout.write(f"schedule ready: {name}")
