"""`FastLoadMixin`: rows loaded from the database become model instances without `Model.__init__`.

Django builds every loaded row through `Model.__init__` (and, when fields are deferred, a list of
placeholders first). For the engine's hot reads (a thousand intents, with their children and
allocation, per event) that cost several times the query itself. `Model.from_db` is Django's
documented hook for customising loading; this one puts the loaded values straight into the
instance's `__dict__`, which is what `__init__` ends with: the loaded fields set, the others
deferred (read on first access, as Django does), `_state.adding` False and `_state.db` set.

It does not send `pre_init` / `post_init`; no model of this project has receivers for them, and a
test keeps it that way.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Self

from django.db.models.base import ModelState


class FastLoadMixin:
    @classmethod
    def from_db(cls, db: str | None, field_names: Collection[str], values: Collection[Any]) -> Self:
        instance = cls.__new__(cls)
        state = ModelState()
        state.adding = False
        state.db = db
        instance._state = state  # type: ignore[attr-defined]  # set on every model by __init__
        instance.__dict__.update(zip(field_names, values, strict=True))
        return instance
