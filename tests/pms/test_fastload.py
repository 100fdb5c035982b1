"""FastLoadMixin: an instance loaded without Model.__init__ is the instance __init__ would give."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.apps import apps
from django.db.models import Model
from django.db.models.signals import post_init, pre_init

from accounts.models import Account
from pms.fastload import FastLoadMixin
from replication.models import Allocation, OrderMapping
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def test_no_model_listens_to_init_signals_which_fast_loading_skips():
    listening = [m for m in apps.get_models() if pre_init.has_listeners(m) or post_init.has_listeners(m)]
    assert listening == []


def test_the_hot_models_load_fast():
    assert all(issubclass(m, FastLoadMixin) for m in (Account, Allocation, OrderMapping))


def _standard(instance: Model) -> Model:
    """The same row built the way Django builds it (Model.from_db of the base class)."""
    names = [f.attname for f in type(instance)._meta.concrete_fields if f.attname in instance.__dict__]
    return Model.from_db.__func__(type(instance), "default", names, [instance.__dict__[n] for n in names])  # type: ignore[attr-defined]


def test_fast_loaded_instance_matches_django_s_and_behaves_like_it():
    child = AccountFactory(multiplier=Decimal("1.5"))
    loaded = Account.objects.get(pk=child.pk)
    standard = _standard(loaded)
    fields = [f.attname for f in Account._meta.concrete_fields]
    assert [getattr(loaded, f) for f in fields] == [getattr(standard, f) for f in fields]
    assert (loaded._state.adding, loaded._state.db) == (False, "default")
    assert loaded == child and hash(loaded) == hash(child)
    loaded.display_name = "renamed"
    loaded.save(update_fields=["display_name"])  # an UPDATE, not an INSERT
    assert Account.objects.get(pk=child.pk).display_name == "renamed"
    assert Account.objects.count() == 1


def test_fast_loaded_deferred_fields_load_on_first_access():
    child = AccountFactory(multiplier=Decimal("2"))
    partial = Account.objects.only("status").get(pk=child.pk)
    assert partial.get_deferred_fields() >= {"multiplier", "capital_mode"}
    assert partial.multiplier == Decimal("2")  # read from the database now
    assert "multiplier" not in partial.get_deferred_fields()
