"""Bulk writes that stay fast at thousands of rows.

Django's `bulk_update` builds a CASE WHEN expression per field per row and spends seconds
compiling it for a thousand mappings; `update_rows` sends one prepared UPDATE per row through
`executemany` instead (one round of statements, no SQL compilation per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django.db import connections, models, router
from django.utils import timezone

from pms.sqlvalues import COPY_UPDATE_MIN_ROWS, copy_rows, copy_update, row_reader, value_adapters

# PostgreSQL accepts 65,535 bind parameters per statement; stay below it. SQLite's limit is raised
# to match at connection time (see replication.apps).
MAX_PARAMS = 60_000


def batch_size(model: type[models.Model]) -> int:
    return max(1, MAX_PARAMS // len(model._meta.concrete_fields))


def update_rows(objs: Sequence[models.Model], fields: Sequence[str]) -> int:
    """UPDATE each object's `fields` by primary key (auto_now fields are stamped). On PostgreSQL
    many rows go through a temporary table (`copy_update`)."""
    if not objs:
        return 0
    model = type(objs[0])
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    columns = [cast("models.Field[Any, Any]", meta.get_field(name)) for name in fields]
    now = timezone.now()
    for field in columns:
        if getattr(field, "auto_now", False):
            for obj in objs:
                setattr(obj, field.attname, now)
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608  (names from model meta, values bound)
    read = row_reader([f.attname for f in columns], value_adapters(columns, connection))
    params = [[*read(obj), obj.pk] for obj in objs]
    if connection.vendor == "postgresql" and len(objs) >= COPY_UPDATE_MIN_ROWS:
        copy_update(connection, meta.db_table, meta.pk.column, [f.column for f in columns], params)
        return len(objs)
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return len(objs)


def insert_rows(model: type[models.Model], objs: Sequence[object]) -> int:
    """INSERT rows of `model` without reading ids back: one prepared statement through
    `executemany`, or COPY on PostgreSQL (counted as one query). For intents, whose identity is
    their deterministic tag, not their primary key. `objs` are model instances or any objects
    with an attribute per column (`attname`).

    Values are adapted as Django's `bulk_create` would adapt them (`pms.sqlvalues`).
    """
    if not objs:
        return 0
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objs:
                setattr(obj, field.attname, now)
    read = row_reader([f.attname for f in fields], value_adapters(fields, connection))
    rows = [read(obj) for obj in objs]
    if connection.vendor == "postgresql":
        copy_rows(connection, meta.db_table, [f.column for f in fields], rows)
        return len(objs)
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608  (names from model meta, values bound)
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    return len(objs)
