"""Plain-SQL reads and writes for the order path (instrument, account book, inserts, updates).

Django compiles a queryset's SQL every time it runs; on the placement hot path (a thousand children
at once in the fan-out benchmark) compiling cost more than the database work. These statements are
built once per process from the models' own table and column names, run as plain SQL (SQLite
3.35+ and PostgreSQL alike, `RETURNING` included), and read back as ordinary model instances with
the listed fields loaded (any other field loads on first access, as with `.only()`). Writes adapt
values with each field's own `get_db_prep_save`; there are no signals or save() hooks to skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

from brokers.paper.models import LIVE_STATUSES, PaperInstrument, PaperOrder, PaperPosition

INSTRUMENT_FIELDS = (
    "id",
    "exchange",
    "tradingsymbol",
    "instrument_type",
    "underlying",
    "segment",
    "lot_size",
    "tick_size",
    "strike",
    "last_price",
    "freeze_quantity",
)
POSITION_FIELDS = (
    "id",
    "account_id",
    "instrument_id",
    "exchange",
    "tradingsymbol",
    "product",
    "quantity",
    "average_price",
    "realised_pnl",
    "buy_quantity",
    "buy_value",
    "sell_quantity",
    "sell_value",
)
ORDER_FIELDS = (
    "id",
    "account_id",
    "instrument_id",
    "order_id",
    "tag",
    "exchange",
    "tradingsymbol",
    "side",
    "order_type",
    "product",
    "validity",
    "variety",
    "quantity",
    "price",
    "trigger_price",
    "status",
    "status_message",
    "filled_quantity",
    "average_price",
    "modifications",
)

ModelT = TypeVar("ModelT", bound=models.Model)


@cache
def _decimal_places(model: type[models.Model]) -> dict[str, int]:
    return {
        field.attname: field.decimal_places
        for field in model._meta.concrete_fields
        if isinstance(field, models.DecimalField)
    }


def _columns(model: type[models.Model], fields: Sequence[str], alias: str) -> str:
    """Column list; decimals are read as text so no backend turns them into floats."""
    decimals = _decimal_places(model)
    return ", ".join(
        f"CAST({alias}.{name} AS TEXT)" if name in decimals else f"{alias}.{name}" for name in fields
    )


def _instance(model: type[ModelT], fields: Sequence[str], values: Sequence[object]) -> ModelT:
    """A model instance from one row (`from_db` wants the values in the model's field order)."""
    decimals = _decimal_places(model)
    row = dict(zip(fields, values, strict=True))
    for name, places in decimals.items():
        if row.get(name) is not None:
            row[name] = Decimal(str(row[name])).quantize(Decimal(1).scaleb(-places))
    names = [f.attname for f in model._meta.concrete_fields if f.attname in row]
    return model.from_db(DEFAULT_DB_ALIAS, names, [row[name] for name in names])


def _db() -> BaseDatabaseWrapper:
    """This thread's connection, looked up once per call (each `connection.x` is a thread-local lookup)."""
    return connections[DEFAULT_DB_ALIAS]


def _table(model: type[models.Model]) -> str:
    return _db().ops.quote_name(model._meta.db_table)


# The SQL below splices in only identifiers taken from the models; every value is a parameter.


@cache
def _instrument_sql() -> str:
    columns, table = _columns(PaperInstrument, INSTRUMENT_FIELDS, "i"), _table(PaperInstrument)
    return f"SELECT {columns} FROM {table} i WHERE i.exchange = %s AND i.tradingsymbol = %s"  # noqa: S608


@cache
def _positions_sql() -> str:
    columns = ", ".join(
        [_columns(PaperPosition, POSITION_FIELDS, "p"), _columns(PaperInstrument, INSTRUMENT_FIELDS, "i")]
    )
    tables = f"{_table(PaperPosition)} p JOIN {_table(PaperInstrument)} i ON i.id = p.instrument_id"
    return f"SELECT {columns} FROM {tables} WHERE p.account_id = %s"  # noqa: S608


@cache
def _live_orders_sql() -> str:
    columns = (
        f"{_columns(PaperOrder, ORDER_FIELDS, 'o')}, {_columns(PaperInstrument, INSTRUMENT_FIELDS, 'i')}"
    )
    tables = f"{_table(PaperOrder)} o JOIN {_table(PaperInstrument)} i ON i.id = o.instrument_id"
    statuses = ", ".join(["%s"] * len(LIVE_STATUSES))
    where = f"o.account_id = %s AND o.status IN ({statuses})"
    return f"SELECT {columns} FROM {tables} WHERE {where} ORDER BY o.placed_at, o.id"  # noqa: S608


def instrument_by_key(exchange: str, tradingsymbol: str) -> PaperInstrument | None:
    with _db().cursor() as cursor:
        cursor.execute(_instrument_sql(), [exchange, tradingsymbol])
        row = cursor.fetchone()
    return _instance(PaperInstrument, INSTRUMENT_FIELDS, row) if row else None


def book_rows(account_id: int) -> tuple[list[PaperPosition], list[PaperOrder]]:
    """The account's positions (flat ones too) and live orders, each with its instrument."""
    split_position = len(POSITION_FIELDS)
    split_order = len(ORDER_FIELDS)
    with _db().cursor() as cursor:
        cursor.execute(_positions_sql(), [account_id])
        position_rows = cursor.fetchall()
        cursor.execute(_live_orders_sql(), [account_id, *(str(status) for status in LIVE_STATUSES)])
        order_rows = cursor.fetchall()
    positions = []
    for row in position_rows:
        position = _instance(PaperPosition, POSITION_FIELDS, row[:split_position])
        position.instrument = _instance(PaperInstrument, INSTRUMENT_FIELDS, row[split_position:])
        positions.append(position)
    orders = []
    for row in order_rows:
        order = _instance(PaperOrder, ORDER_FIELDS, row[:split_order])
        order.instrument = _instance(PaperInstrument, INSTRUMENT_FIELDS, row[split_order:])
        orders.append(order)
    return positions, orders


# --- Writes -----------------------------------------------------------------------------------


@cache
def _insert_sql(model: type[models.Model]) -> tuple[str, tuple[models.Field[Any, Any], ...]]:
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(_db().ops.quote_name(f.column) for f in fields)
    values = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {_table(model)} ({columns}) VALUES ({values}) RETURNING id"  # noqa: S608
    return sql, fields


def insert(instance: models.Model) -> None:
    """INSERT every concrete field of a new instance and set its primary key."""
    sql, fields = _insert_sql(type(instance))
    db = _db()
    params = [f.get_db_prep_save(getattr(instance, f.attname), db) for f in fields]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        (instance.pk,) = cursor.fetchone()
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS


@cache
def _update_sql(
    model: type[models.Model], names: tuple[str, ...]
) -> tuple[str, tuple[models.Field[Any, Any], ...]]:
    by_name = {f.attname: f for f in model._meta.concrete_fields}
    fields = tuple(by_name[name] for name in names)
    assignments = ", ".join(f"{_db().ops.quote_name(f.column)} = %s" for f in fields)
    sql = f"UPDATE {_table(model)} SET {assignments} WHERE id = %s"  # noqa: S608
    return sql, fields


def update(instance: models.Model, names: Sequence[str]) -> None:
    """UPDATE the named fields of a saved instance."""
    sql, fields = _update_sql(type(instance), tuple(names))
    db = _db()
    params = [f.get_db_prep_save(getattr(instance, f.attname), db) for f in fields]
    with db.cursor() as cursor:
        cursor.execute(sql, [*params, instance.pk])
