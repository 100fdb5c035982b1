"""Fixtures for engine tests (a pytest plugin, listed in conftest): the paper desk of DESIGN §3.6
behind a broker with switchable faults, and an orchestrator that sends inline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replication.orchestrator import Orchestrator
from tests.engine_helpers import Desk, build_desk
from tests.faulty_broker import Faults, install


@pytest.fixture
def faults() -> Iterator[Faults]:
    """Paper clients that fail on demand (installed in the broker registry for the test)."""
    f = Faults()
    restore = install(f)
    yield f
    restore()


@pytest.fixture
def desk(faults: Faults, db: None) -> Desk:
    return build_desk()


@pytest.fixture
def orch() -> Iterator[Orchestrator]:
    o = Orchestrator(holder="test-orchestrator", workers=0)
    yield o
    o.close()
