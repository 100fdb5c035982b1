"""brokers.daily_cache as the Angel, Dhan and Alice Blue adapters use it: a master downloaded once per
source and IST day, shared by every client in the process."""

from __future__ import annotations

from datetime import UTC, datetime

from brokers.alice.scrip import ContractCache, ContractMaster
from brokers.alice.scrip import shared_cache as alice_cache
from brokers.angel.scrip import ScripCache, ScripMaster
from brokers.angel.scrip import shared_cache as angel_cache
from brokers.dhan.scrip import shared_cache as dhan_cache


def test_the_master_is_loaded_once_a_day_in_ist():
    now = [datetime(2024, 12, 26, 18, 0, tzinfo=UTC)]  # 23:30 IST
    cache = ScripCache(clock=lambda: now[0])
    loads: list[ScripMaster] = []

    def load() -> ScripMaster:
        loads.append(ScripMaster([]))
        return loads[-1]

    first = cache.get(load)
    assert cache.get(load) is first
    now[0] = datetime(2024, 12, 26, 18, 29, tzinfo=UTC)  # 23:59 IST: the same day
    assert cache.get(load) is first and len(loads) == 1
    now[0] = datetime(2024, 12, 26, 18, 31, tzinfo=UTC)  # 00:01 IST: a new day, a new master
    assert cache.get(load) is not first and len(loads) == 2
    cache.clear()
    cache.get(load)
    assert len(loads) == 3


def test_one_cache_per_source_for_the_whole_process():
    assert angel_cache("https://a/x.json") is angel_cache("https://a/x.json")
    assert angel_cache("https://a/x.json") is not angel_cache("https://a/y.json")
    assert isinstance(alice_cache("https://b/NSE.csv"), ContractCache)
    assert dhan_cache("https://a/x.json") is not angel_cache("https://a/x.json")  # each adapter its own
    master = ContractMaster([])
    assert alice_cache("https://b/NSE.csv").get(lambda: master) is master
