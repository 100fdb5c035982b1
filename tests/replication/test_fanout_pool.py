"""The fan-out pool's threads are started ahead of the next event (issue 17): the executor starts
them lazily, one per submit, in the middle of the first fan-out."""

from __future__ import annotations

import threading

import pytest

from replication.fanout import FanOut
from replication.orchestrator import Orchestrator
from tests.engine_helpers import build_desk


def fanout_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("fanout"))


def test_start_runs_every_worker_thread_once():
    before = fanout_threads()
    pool = FanOut(workers=8)
    try:
        assert pool.start() == 8
        assert fanout_threads() - before == 8
        assert pool.start() == 0  # already running: nothing more
        assert pool.map(lambda x: [x * 2], list(range(20))) == [x * 2 for x in range(20)]
        assert fanout_threads() - before == 8
    finally:
        pool.close()
    assert fanout_threads() == before


def test_start_without_workers_starts_nothing():
    pool = FanOut(workers=0)
    assert pool.start() == 0
    assert pool.map(lambda x: [x], [1, 2]) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_an_idle_tick_starts_the_pool_before_the_first_event():
    build_desk()
    orch = Orchestrator(holder="pool", workers=6)
    try:
        before = fanout_threads()
        idle = orch.run_tick()
        assert idle.events == 0 and not idle.errors
        assert fanout_threads() - before == 6
    finally:
        orch.close()
