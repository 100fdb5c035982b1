"""pms.sqlvalues: the bulk writers' values are the values Django itself would send, on this backend.

`make test-pg` runs these on PostgreSQL, whose integer adapters differ from SQLite's (a reference
to a `BigAutoField` once reached an adapter that had no entry for it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, models

from brokers.paper.models import PaperOrder, PaperPosition, PaperTrade
from pms.sqlvalues import row_reader, value_adapters
from replication.models import OrderMapping

PROJECT_APPS = ("accounts", "replication", "brokers")
WHEN = datetime(2026, 12, 1, 9, 15, 30, 250_000, tzinfo=UTC)


def _sample(field: models.Field[Any, Any]) -> object:
    """A value of the field's type for the adapters that skip `get_db_prep_save`."""
    kind = type(field)
    if kind in (models.CharField, models.TextField):
        return "NIFTY25DECFUT"
    if kind is models.DecimalField:
        return Decimal("24500.05")
    if kind is models.DateTimeField:
        return WHEN
    if isinstance(field, models.ForeignKey | models.IntegerField):
        return 1_234_567
    return None


def _fields() -> list[tuple[str, models.Field[Any, Any]]]:
    found = []
    for label in PROJECT_APPS:
        for model in apps.get_app_config(label).get_models():
            for field in model._meta.concrete_fields:
                if not field.primary_key and _sample(field) is not None:
                    found.append((f"{model.__name__}.{field.attname}", field))
    return found


FIELDS = _fields()


def test_every_kind_of_fast_path_field_is_covered():
    kinds = {type(field) for _, field in FIELDS}
    assert {models.CharField, models.DecimalField, models.DateTimeField, models.ForeignKey} <= kinds
    assert any(isinstance(field, models.IntegerField) for _, field in FIELDS)


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "field"), FIELDS, ids=[name for name, _ in FIELDS])
def test_adapted_value_is_what_django_sends(name, field):
    value = _sample(field)
    (adapt,) = value_adapters([field], connection)
    assert adapt(value) == field.get_db_prep_save(value, connection), name


@pytest.mark.django_db
def test_none_stays_none_for_every_nullable_field():
    nullable = [field for _, field in FIELDS if field.null]
    assert nullable
    for field, adapt in zip(nullable, value_adapters(nullable, connection), strict=True):
        assert adapt(None) is None, field


@pytest.mark.django_db
@pytest.mark.parametrize("model", [OrderMapping, PaperOrder, PaperTrade, PaperPosition])
def test_row_reader_reads_every_column_of_the_bulk_written_models(model):
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    instance = model(**{f.attname: _sample(f) for f in fields if _sample(f) is not None})
    row = row_reader([f.attname for f in fields], value_adapters(fields, connection))(instance)
    expected = [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields]
    assert len(row) == len(fields)
    for field, got, want in zip(fields, row, expected, strict=True):
        if _sample(field) is not None or getattr(instance, field.attname) is None:
            assert got == want, field.attname
