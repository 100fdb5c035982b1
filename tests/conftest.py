"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from accounts.crypto import reload_crypter

# REST API fixtures (people with tokens, a fake broker) and engine fixtures (faults, desk, orch).
pytest_plugins = ["tests.api_helpers", "tests.engine_fixtures"]


@pytest.fixture
def rotate_key():
    """Switch FIELD_ENCRYPTION_KEY for the duration of a test (reloads the key ring both ways)."""
    stack = []

    def _switch(keys: list[str]) -> None:
        ctx = override_settings(FIELD_ENCRYPTION_KEY=keys)
        ctx.enable()
        stack.append(ctx)
        reload_crypter()

    yield _switch
    while stack:
        stack.pop().disable()
    reload_crypter()


@pytest.fixture
def angel_sim() -> Iterator[Any]:
    """The Angel One simulator on loopback, the adapter pointed at it (tests/angel_helpers.py)."""
    from tests.angel_helpers import running_angel_sim

    yield from running_angel_sim()
