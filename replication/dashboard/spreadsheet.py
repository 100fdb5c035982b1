"""CSV cells a spreadsheet opens as data, never as a formula (CSV / formula injection).

Text that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by Excel,
LibreOffice and Google Sheets; such a cell gets a leading `'`, which they show as plain text. Only
text is touched: numbers (ints, Decimals) are written as they are, so a genuine `-150` stays a number.
Names, reasons and broker messages are text even when a client or a broker chose them to look numeric.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

CsvCell = str | int | Decimal | None

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """Text as a spreadsheet shows it, never evaluates it."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_row(cells: Iterable[CsvCell]) -> list[str | int | Decimal]:
    """One row for csv.writer: text neutralised, numbers untouched, None as an empty cell."""
    return ["" if cell is None else csv_text(cell) if isinstance(cell, str) else cell for cell in cells]
