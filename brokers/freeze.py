"""Freeze quantities: the largest quantity one order may carry, per underlying's derivatives.

Where they come from (`brokers.capabilities.FreezeSource`): the broker's own instrument master when
it publishes them (Upstox, Fyers, the paper exchange: `Instrument.freeze_quantity`), else the table
staff keep in the admin (`brokers.models.FreezeQuantity`, seeded from the exchanges' published
limits). `settings.FREEZE_QUANTITIES` (`NIFTY=1800,...`, empty by default) is a deployment's
override of the table. The broker's own figure always wins.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import replace

from django.conf import settings
from django.db import transaction

from brokers.models import FreezeQuantity
from brokers.types import Instrument


def freeze_table() -> dict[str, int]:
    """Underlying -> freeze quantity: the staff table, with the configured override on top."""
    table = dict(FreezeQuantity.objects.values_list("underlying", "quantity"))
    configured: Mapping[str, int] = settings.FREEZE_QUANTITIES
    table.update({name.upper(): quantity for name, quantity in configured.items()})
    return table


def with_freeze_quantity(instrument: Instrument, table: Mapping[str, int]) -> Instrument:
    """The instrument, with its underlying's freeze quantity from `table` if its broker gave none."""
    if instrument.freeze_quantity or not instrument.underlying:
        return instrument
    configured = table.get(instrument.underlying.upper())
    return replace(instrument, freeze_quantity=configured) if configured else instrument


def parse_exchange_file(text: str) -> dict[str, int]:
    """NSE's quantity-freeze file (`qtyfreeze.csv`: SYMBOL, VOL_FRZ_QTY columns, other columns
    ignored; headers matched without case or spaces) as underlying -> quantity. Raises ValueError."""
    reader = csv.reader(io.StringIO(text))
    header = [cell.strip().upper().replace(" ", "") for cell in next(reader, [])]
    try:
        name_at = header.index("SYMBOL")
        quantity_at = next(i for i, cell in enumerate(header) if cell.startswith("VOL_FRZ_QTY"))
    except (ValueError, StopIteration):
        raise ValueError("expected SYMBOL and VOL_FRZ_QTY columns") from None
    table: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        name = row[name_at].strip().upper() if len(row) > name_at else ""
        quantity = row[quantity_at].strip().replace(",", "") if len(row) > quantity_at else ""
        if not name or not quantity.isdigit() or int(quantity) <= 0:
            raise ValueError(f"line {line}: {row!r} has no symbol or no positive quantity")
        table[name] = int(quantity)
    return table


def freeze_quantities_store(
    rows: Mapping[str, int], *, exchange: str = "NFO", source: str
) -> tuple[int, int]:
    """Create or update a row per underlying; returns (created, updated)."""
    created = updated = 0
    with transaction.atomic():
        for underlying, quantity in rows.items():
            _, new = FreezeQuantity.objects.update_or_create(
                underlying=underlying.upper(),
                defaults={"quantity": quantity, "exchange": exchange, "source": source},
            )
            created += new
            updated += not new
    return created, updated


def underlyings_without_freeze(instruments: Iterable[Instrument]) -> set[str]:
    """Derivative underlyings with no freeze quantity anywhere (orders for them go out whole)."""
    table = freeze_table()
    return {
        i.underlying.upper()
        for i in instruments
        if i.underlying and not i.freeze_quantity and i.underlying.upper() not in table
    }
