"""Load NSE's quantity-freeze file (qtyfreeze.csv) into the freeze-quantity table staff keep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from brokers.freeze import freeze_quantities_store, parse_exchange_file


class Command(BaseCommand):
    help = (
        "Load the exchange's quantity freeze limits (NSE qtyfreeze.csv: SYMBOL, VOL_FRZ_QTY) into the table."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the exchange's CSV file")
        parser.add_argument("--exchange", default="NFO", help="NFO (default) or BFO")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        try:
            rows = parse_exchange_file(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        created, updated = freeze_quantities_store(
            rows, exchange=str(options["exchange"]).upper(), source=f"loaded from {path.name}"
        )
        self.stdout.write(f"freeze quantities: {created} created, {updated} updated")
