"""Values for hand-written bulk SQL, adapted as Django would adapt them, without its per-value work.

`Field.get_db_prep_save` runs each value through `get_prep_value`, `to_python` and the backend's
adapter; for thousands of rows (the engine's intents, the paper exchange's batches) those generic
steps cost more than the statement. `value_adapters` picks, per field, the backend's own adapter
for the plain field types (what `get_db_prep_save` ends in) and `get_db_prep_save` itself for any
other field, so values reach the driver exactly as Django would send them. `copy_rows` sends
such rows to PostgreSQL with COPY.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from functools import lru_cache, partial
from typing import Any

from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper
from django.db.models.fields import AutoFieldMixin

Adapter = Callable[[Any], Any]
_INTEGERS = (
    models.IntegerField,
    models.PositiveIntegerField,
    models.PositiveSmallIntegerField,
    models.SmallIntegerField,
    models.BigIntegerField,
)


def _text(value: object) -> object:
    return value if value is None or type(value) is str else str(value)


def _key(value: Any) -> Any:
    """A reference to an auto primary key: Django sends it as a plain int (`AutoFieldMixin`
    skips `adapt_integerfield_value`, whose PostgreSQL map has no `*AutoField` entry)."""
    return value if value is None or type(value) is int else int(value)


def value_adapters(
    fields: Sequence[models.Field[Any, Any]], connection: BaseDatabaseWrapper
) -> list[Adapter]:
    """One adapter per field. The rows of one batch share their timestamps, so each datetime
    is adapted once (SQLite formats them as text)."""
    adapters: list[Adapter] = []
    datetimes = lru_cache(maxsize=8)(connection.ops.adapt_datetimefield_value)
    for field in fields:
        kind = type(field)
        if kind in (models.CharField, models.TextField):
            adapters.append(_text)
        elif kind is models.DecimalField:
            adapters.append(connection.ops.adapt_decimalfield_value)
        elif kind is models.DateTimeField:
            adapters.append(datetimes)
        elif kind in _INTEGERS:
            internal = field.get_internal_type()
            adapters.append(partial(connection.ops.adapt_integerfield_value, internal_type=internal))
        elif kind is models.ForeignKey and isinstance(field, models.ForeignKey):
            target = field.target_field
            if isinstance(target, AutoFieldMixin):
                adapters.append(_key)
            elif type(target) in _INTEGERS:
                internal = target.get_internal_type()
                adapters.append(partial(connection.ops.adapt_integerfield_value, internal_type=internal))
            else:
                adapters.append(partial(field.get_db_prep_save, connection=connection))
        else:
            adapters.append(partial(field.get_db_prep_save, connection=connection))
    return adapters


def row_reader(names: Sequence[str], adapters: Sequence[Adapter]) -> Callable[[object], list[Any]]:
    """A function giving an object's adapted values for `names` (attributes: model attnames)."""
    if len(names) == 1:
        (name,), (adapt,) = names, adapters
        return lambda obj: [adapt(getattr(obj, name))]
    values = operator.attrgetter(*names)
    pairs = list(adapters)
    return lambda obj: [adapt(value) for adapt, value in zip(pairs, values(obj), strict=True)]


def copy_rows(
    connection: BaseDatabaseWrapper, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """PostgreSQL: write adapted rows into `table` with COPY, one statement for any number.

    Django's psycopg cursors bind parameters on the client, quoting every value in Python (about
    0.1 ms a row of an intent); COPY writes the rows in C. It goes through the raw cursor, so the
    query log and Django's error translation (an `IntegrityError`, not psycopg's) are kept here.
    """
    quote = connection.ops.quote_name
    sql = f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    with connection.cursor() as cursor:
        logged = cursor.debug_sql(sql) if isinstance(cursor, CursorDebugWrapper) else nullcontext()
        with logged, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)


# Below this many rows an UPDATE per row is as quick as the temporary table's three statements.
COPY_UPDATE_MIN_ROWS = 20


def copy_update(
    connection: BaseDatabaseWrapper,
    table: str,
    pk_column: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """PostgreSQL: UPDATE `columns` of many rows by primary key: COPY the new values (`rows`:
    the columns' values, then the key) into a temporary table shaped like `table`, then one
    UPDATE ... FROM it, then drop it. The statements run in one transaction (a savepoint inside
    a caller's), so an error leaves neither the table nor a partial update."""
    quote = connection.ops.quote_name
    temp = quote(f"pms_update_{table}")
    names = [*columns, pk_column]
    selected = ", ".join(quote(c) for c in names)
    assignments = ", ".join(f"{quote(c)} = {temp}.{quote(c)}" for c in columns)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {temp} AS "  # noqa: S608  (names from model meta)
            f"SELECT {selected} FROM {quote(table)} WITH NO DATA"
        )
        copy_rows(connection, f"pms_update_{table}", names, rows)
        cursor.execute(
            f"UPDATE {quote(table)} SET {assignments} FROM {temp} "  # noqa: S608  (names from model meta)
            f"WHERE {quote(table)}.{quote(pk_column)} = {temp}.{quote(pk_column)}"
        )
        cursor.execute(f"DROP TABLE {temp}")
