"""The master's calculator reads go out together in the fan-out pool, each answer on its own."""

from __future__ import annotations

import threading

import pytest

from brokers.errors import BrokerUnavailable
from replication.fanout import FanOut
from replication.orchestrator import read_together


def test_read_together_runs_the_reads_at_the_same_time():
    arrived = threading.Barrier(3)  # passes only if all three reads are in flight at once

    def read(value: str):
        def call() -> str:
            arrived.wait(timeout=5)
            return value

        return call

    pool = FanOut(4)
    try:
        answers = read_together(pool, {"margins": read("m"), "basket": read("b"), "ltp": read("l")})
    finally:
        pool.close()
    assert answers == {"margins": "m", "basket": "b", "ltp": "l"}


def test_read_together_gives_each_broker_error_as_that_read_s_answer():
    def down() -> str:
        raise BrokerUnavailable("calculator unreachable")

    answers = read_together(FanOut(0), {"margins": lambda: [1], "ltp": down})
    assert answers["margins"] == [1]
    assert isinstance(answers["ltp"], BrokerUnavailable)


def test_read_together_lets_other_errors_through():
    def broken() -> str:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        read_together(FanOut(0), {"margins": broken})
