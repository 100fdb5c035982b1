"""Plain-SQL reads and writes for the order path (instrument, account book, inserts, updates).

Django compiles a queryset's SQL every time it runs; on the placement hot path (a thousand children
at once in the fan-out benchmark) compiling cost more than the database work. These statements are
built once per process from the models' own table and column names, run as plain SQL (SQLite
3.35+ and PostgreSQL alike, `RETURNING` included), and read back as ordinary model instances with
the listed fields loaded (any other field loads on first access, as with `.only()`). Writes adapt
values with each field's own `get_db_prep_save`; there are no signals or save() hooks to skip.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState

from brokers.paper.models import LIVE_STATUSES, PaperAccount, PaperInstrument, PaperOrder, PaperPosition
from pms.sqlvalues import copy_rows, row_reader, value_adapters

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
    "expiry",
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


@cache
def _date_fields(model: type[models.Model]) -> frozenset[str]:
    return frozenset(
        field.attname
        for field in model._meta.concrete_fields
        if isinstance(field, models.DateField) and not isinstance(field, models.DateTimeField)
    )


def _instance(model: type[ModelT], fields: Sequence[str], values: Sequence[object]) -> ModelT:
    """A model instance from one row (`from_db` wants the values in the model's field order)."""
    decimals = _decimal_places(model)
    row = dict(zip(fields, values, strict=True))
    for name, places in decimals.items():
        if row.get(name) is not None:
            row[name] = Decimal(str(row[name])).quantize(Decimal(1).scaleb(-places))
    for name in _date_fields(model):
        text = row.get(name)
        if isinstance(text, str):  # SQLite hands dates back as ISO text
            row[name] = date.fromisoformat(text)
    names = [f.attname for f in model._meta.concrete_fields if f.attname in row]
    return model.from_db(DEFAULT_DB_ALIAS, names, [row[name] for name in names])


@cache
def _blank(model: type[models.Model]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every field's default by attribute name: constants, and callables (called per row)."""
    constant: dict[str, Any] = {}
    per_row: dict[str, Any] = {}
    for field in model._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            per_row[field.attname] = field.default
        else:
            constant[field.attname] = None if field.primary_key else field.get_default()
    return constant, per_row


def build(model: type[ModelT], related: Mapping[str, models.Model], **values: Any) -> ModelT:
    """A new, unsaved instance, as `Model(**kwargs)` builds it but about ten times faster.

    `values` are by attribute name (`account_id`, not `account`); each `related` object sets its
    foreign key and is cached on the instance, as assigning it would. The paper models have no
    `__init__` of their own and no `pre_init`/`post_init` receivers, which this skips.
    """
    constant, per_row = _blank(model)
    row = constant | values
    for name, default in per_row.items():
        if name not in values:
            row[name] = default()
    for name, obj in related.items():
        row[f"{name}_id"] = obj.pk
    instance = model.__new__(model)
    instance._state = ModelState()
    instance.__dict__.update(row)
    for name, obj in related.items():
        instance._state.fields_cache[name] = obj
    return instance


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
def _instruments_sql(count: int) -> str:
    columns, table = _columns(PaperInstrument, INSTRUMENT_FIELDS, "i"), _table(PaperInstrument)
    keys = " OR ".join(["(i.exchange = %s AND i.tradingsymbol = %s)"] * count)
    return f"SELECT {columns} FROM {table} i WHERE {keys}"  # noqa: S608


@cache
def _positions_sql(accounts: int) -> str:
    columns = ", ".join(
        [_columns(PaperPosition, POSITION_FIELDS, "p"), _columns(PaperInstrument, INSTRUMENT_FIELDS, "i")]
    )
    tables = f"{_table(PaperPosition)} p JOIN {_table(PaperInstrument)} i ON i.id = p.instrument_id"
    return f"SELECT {columns} FROM {tables} WHERE p.account_id IN ({_marks(accounts)})"  # noqa: S608


@cache
def _live_orders_sql(accounts: int) -> str:
    columns = (
        f"{_columns(PaperOrder, ORDER_FIELDS, 'o')}, {_columns(PaperInstrument, INSTRUMENT_FIELDS, 'i')}"
    )
    tables = f"{_table(PaperOrder)} o JOIN {_table(PaperInstrument)} i ON i.id = o.instrument_id"
    where = f"o.account_id IN ({_marks(accounts)}) AND o.status IN ({_marks(len(LIVE_STATUSES))})"
    return f"SELECT {columns} FROM {tables} WHERE {where} ORDER BY o.placed_at, o.id"  # noqa: S608


@cache
def _accounts_sql(count: int, lock: bool) -> str:
    table = _table(PaperAccount)
    select = f"SELECT id, user_id, CAST(cash AS TEXT), order_seq FROM {table}"  # noqa: S608
    # Rows locked in id order, so two batches (two processes on PostgreSQL) cannot deadlock.
    return f"{select} WHERE user_id IN ({_marks(count)}) ORDER BY id{' FOR UPDATE' if lock else ''}"


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    """Slices small enough for any backend's limit on parameters in one statement."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(count: int) -> str:
    return ", ".join(["%s"] * count)


def instrument_by_key(exchange: str, tradingsymbol: str) -> PaperInstrument | None:
    with _db().cursor() as cursor:
        cursor.execute(_instrument_sql(), [exchange, tradingsymbol])
        row = cursor.fetchone()
    return _instance(PaperInstrument, INSTRUMENT_FIELDS, row) if row else None


def instruments_by_keys(keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], PaperInstrument]:
    """Instruments by (exchange, tradingsymbol); unknown keys are left out."""
    found: dict[tuple[str, str], PaperInstrument] = {}
    with _db().cursor() as cursor:
        for chunk in _chunks(sorted(keys), 200):
            cursor.execute(_instruments_sql(len(chunk)), [part for key in chunk for part in key])
            for row in cursor.fetchall():
                instrument = _instance(PaperInstrument, INSTRUMENT_FIELDS, row)
                found[(instrument.exchange, instrument.tradingsymbol)] = instrument
    return found


def lock_accounts(user_ids: Collection[str]) -> dict[str, PaperAccount]:
    """The accounts (id, user_id, cash, order_seq loaded), row-locked for this transaction.

    PostgreSQL takes the row locks (`FOR UPDATE`, in id order); SQLite's `BEGIN IMMEDIATE`
    transaction already holds the database's write lock.
    """
    lock = _db().features.has_select_for_update
    accounts: dict[str, PaperAccount] = {}
    with _db().cursor() as cursor:
        for chunk in _chunks(sorted(user_ids)):
            cursor.execute(_accounts_sql(len(chunk), lock), list(chunk))
            for pk, user_id, cash, order_seq in cursor.fetchall():
                accounts[user_id] = PaperAccount.from_db(
                    DEFAULT_DB_ALIAS,
                    ["id", "user_id", "cash", "order_seq"],
                    [pk, user_id, Decimal(cash).quantize(Decimal("0.01")), order_seq],
                )
    return accounts


def book_rows(account_id: int) -> tuple[list[PaperPosition], list[PaperOrder]]:
    """The account's positions (flat ones too) and live orders, each with its instrument."""
    return books_rows([account_id]).get(account_id, ([], []))


def books_rows(account_ids: Collection[int]) -> dict[int, tuple[list[PaperPosition], list[PaperOrder]]]:
    """`book_rows` for many accounts at once (two statements per 500 accounts)."""
    books: dict[int, tuple[list[PaperPosition], list[PaperOrder]]] = {pk: ([], []) for pk in account_ids}
    split_position = len(POSITION_FIELDS)
    split_order = len(ORDER_FIELDS)
    statuses = [str(status) for status in LIVE_STATUSES]
    instruments: dict[object, PaperInstrument] = {}

    def instrument(values: Sequence[object]) -> PaperInstrument:
        """One shared instance per instrument (read-only here) instead of one per row."""
        found = instruments.get(values[0])
        if found is None:
            found = instruments[values[0]] = _instance(PaperInstrument, INSTRUMENT_FIELDS, values)
        return found

    with _db().cursor() as cursor:
        for chunk in _chunks(list(books)):
            cursor.execute(_positions_sql(len(chunk)), list(chunk))
            for row in cursor.fetchall():
                position = _instance(PaperPosition, POSITION_FIELDS, row[:split_position])
                position.instrument = instrument(row[split_position:])
                books[position.account_id][0].append(position)
            cursor.execute(_live_orders_sql(len(chunk)), [*chunk, *statuses])
            for row in cursor.fetchall():
                order = _instance(PaperOrder, ORDER_FIELDS, row[:split_order])
                order.instrument = instrument(row[split_order:])
                books[order.account_id][1].append(order)
    return books


# --- Writes -----------------------------------------------------------------------------------


@cache
def _insert_fields(model: type[models.Model]) -> tuple[models.Field[Any, Any], ...]:
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key)


def _insert_sql(model: type[models.Model], rows: int, returning: str) -> str:
    fields = _insert_fields(model)
    columns = ", ".join(_db().ops.quote_name(f.column) for f in fields)
    values = ", ".join([f"({_marks(len(fields))})"] * rows)
    tail = f" RETURNING {returning}" if returning else ""
    return f"INSERT INTO {_table(model)} ({columns}) VALUES {values}{tail}"  # noqa: S608


def _saved(instance: models.Model) -> None:
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS


def insert(instance: models.Model) -> None:
    """INSERT every concrete field of a new instance and set its primary key."""
    insert_many([instance], key="id")


def insert_many(instances: Sequence[ModelT], *, key: str = "") -> None:
    """INSERT new instances of one model and mark them saved.

    SQLite: 500 rows per statement; with `key` (a unique column, or "id") their primary keys are
    set from `RETURNING id, key` (matched by that key: RETURNING rows come in no promised order).
    PostgreSQL: one COPY. With `key` the ids are first taken from the table's sequence, ascending
    in the instances' order, and sent with the rows: two short statements, where a multi-row
    INSERT's thousand parameters cost psycopg more to parse and quote in Python than the whole
    COPY. A single instance with `key` is one `INSERT ... RETURNING`.
    """
    if not instances:
        return
    model = type(instances[0])
    fields = _insert_fields(model)
    db = _db()
    if db.vendor == "postgresql" and (not key or len(instances) > 1):
        copied = list(fields)
        if key:
            for instance, pk in zip(instances, _next_ids(model, len(instances)), strict=True):
                instance.pk = pk
            copied.insert(0, model._meta.pk)
        copy_read = _copy_reader(tuple(copied), db)
        copy_rows(db, model._meta.db_table, [f.column for f in copied], (copy_read(i) for i in instances))
        for instance in instances:
            _saved(instance)
        return
    read = row_reader([f.attname for f in fields], value_adapters(fields, db))
    returning = "id" if key == "id" else f"id, {db.ops.quote_name(key)}" if key else ""
    with db.cursor() as cursor:
        for chunk in _chunks(instances):
            params = [value for instance in chunk for value in read(instance)]
            cursor.execute(_insert_sql(model, len(chunk), returning), params)
            if key == "id":
                (chunk[0].pk,) = cursor.fetchone()
            elif key:
                by_key = {getattr(instance, key): instance for instance in chunk}
                for pk, value in cursor.fetchall():
                    by_key[value].pk = pk
    for instance in instances:
        _saved(instance)


# COPY takes Python's own ints, Decimals and datetimes, which Django's PostgreSQL adapters pass
# through unchanged (integers are only wrapped for server-side binding): text and keys get a look.
_AS_IS = frozenset(
    {
        "IntegerField",
        "SmallIntegerField",
        "BigIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "PositiveBigIntegerField",
        "DecimalField",
        "DateTimeField",
    }
)


def _copy_reader(
    fields: tuple[models.Field[Any, Any], ...], db: BaseDatabaseWrapper
) -> Callable[[models.Model], list[Any]]:
    """PostgreSQL COPY: an instance's values of `fields`, as `value_adapters` would give them."""
    get = operator.attrgetter(*(f.attname for f in fields))
    texts: list[int] = []
    keys: list[int] = []
    others: list[tuple[int, Callable[[Any], Any]]] = []
    for n, (field, adapt) in enumerate(zip(fields, value_adapters(fields, db), strict=True)):
        kind = type(field).__name__
        if field.primary_key or isinstance(field, models.ForeignKey):
            keys.append(n)
        elif kind in ("CharField", "TextField"):
            texts.append(n)
        elif kind not in _AS_IS:
            others.append((n, adapt))

    def read(instance: models.Model) -> list[Any]:
        row = list(get(instance))
        for n in texts:
            value = row[n]
            if value is not None and type(value) is not str:
                row[n] = str(value)
        for n in keys:
            value = row[n]
            if value is not None and type(value) is not int:
                row[n] = int(value)
        for n, adapt in others:
            row[n] = adapt(row[n])
        return row

    return read


@cache
def _sequence_sql(model: type[models.Model]) -> str:
    """PostgreSQL: new ids from the primary key's sequence (identity or serial), `%s` of them."""
    table = _table(model).replace("'", "''")
    column = model._meta.pk.column.replace("'", "''")
    return (
        f"SELECT nextval(pg_get_serial_sequence('{table}', '{column}')) "  # noqa: S608 (model names)
        "FROM generate_series(1, %s)"
    )


def _next_ids(model: type[models.Model], count: int) -> list[int]:
    """PostgreSQL: `count` new primary keys, ascending."""
    with _db().cursor() as cursor:
        cursor.execute(_sequence_sql(model), [count])
        return sorted(pk for (pk,) in cursor.fetchall())


@cache
def _update_sql(model: type[models.Model], names: tuple[str, ...]) -> str:
    by_name = {f.attname: f for f in model._meta.concrete_fields}
    assignments = ", ".join(f"{_db().ops.quote_name(by_name[name].column)} = %s" for name in names)
    return f"UPDATE {_table(model)} SET {assignments} WHERE id = %s"  # noqa: S608


def update(instance: models.Model, names: Sequence[str]) -> None:
    """UPDATE the named fields of a saved instance."""
    update_many([instance], names)


def update_many(instances: Sequence[models.Model], names: Sequence[str]) -> None:
    """UPDATE the named fields of saved instances of one model: one executemany on SQLite (or for
    a single row); on PostgreSQL one `UPDATE ... FROM unnest(<an array per column>)` per 500 rows
    (a short statement: one round trip where a temporary table took six)."""
    if not instances:
        return
    model = type(instances[0])
    by_name = {f.attname: f for f in model._meta.concrete_fields}
    db = _db()
    read = row_reader(names, value_adapters([by_name[name] for name in names], db))
    params = [[*read(instance), instance.pk] for instance in instances]
    with db.cursor() as cursor:
        if db.vendor == "postgresql" and len(instances) > 1:
            sql = _update_from_arrays_sql(model, tuple(names))
            for chunk in _chunks(params):
                cursor.execute(sql, [list(column) for column in zip(*chunk, strict=True)])
            return
        cursor.executemany(_update_sql(model, tuple(names)), params)


@cache
def _update_from_arrays_sql(model: type[models.Model], names: tuple[str, ...]) -> str:
    db = _db()
    quote = db.ops.quote_name
    by_name = {f.attname: f for f in model._meta.concrete_fields}
    fields = [by_name[name] for name in names]
    types = [*(f.db_type(db) for f in fields), model._meta.pk.db_type(db)]
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    aliases = ", ".join(f"c{n}" for n in range(len(types)))
    assignments = ", ".join(f"{quote(f.column)} = v.c{n}" for n, f in enumerate(fields))
    table = _table(model)
    return (
        f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS v({aliases}) "  # noqa: S608
        f"WHERE {table}.{quote(model._meta.pk.column)} = v.c{len(fields)}"
    )
