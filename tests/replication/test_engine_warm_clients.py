"""An idle tick builds the children's broker clients ahead of the next master event (issue 17:
the first event of the day spent about a tenth of its fan-out decrypting credentials and building
SDK clients, child by child, while every child waited for its order)."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from django.core.management import call_command

from accounts.models import Account
from brokers import registry
from brokers.paper.client import PaperBroker
from replication.orchestrator import Orchestrator
from tests.engine_helpers import FUT, build_desk

pytestmark = pytest.mark.django_db


@pytest.fixture
def builds():
    """How many clients were built per user id."""
    built: Counter[str] = Counter()

    def counting(creds):
        built[creds.user_id] += 1
        return PaperBroker.for_credentials(creds)

    previous = registry.register("paper", counting)
    yield built
    if previous is None:
        registry.unregister("paper")
    else:
        registry.register("paper", previous)


def test_an_idle_tick_builds_every_child_client_so_the_event_tick_builds_none(builds):
    desk = build_desk()
    orch = Orchestrator(holder="warm", workers=0)
    try:
        idle = orch.run_tick()
        assert idle.events == 0
        children = set(desk.children[name].broker_user_id for name in desk.children)
        assert children <= set(builds)  # every child's client is ready
        before = sum(builds[c] for c in children)

        orch.run_tick()  # nothing changed: nothing rebuilt, one cheap look
        assert sum(builds[c] for c in children) == before

        desk.place("BUY", FUT, 150)
        event = orch.run_tick()
        assert event.events == 1 and event.intents >= 3
        assert sum(builds[c] for c in children) == before  # the event tick built no client
    finally:
        orch.close()


def test_a_changed_child_gets_a_new_client_at_the_next_idle_tick(builds):
    desk = build_desk()
    orch = Orchestrator(holder="warm", workers=0)
    try:
        orch.run_tick()
        child = desk.children["C2"]
        first = builds[child.broker_user_id]
        account = Account.objects.get(pk=child.pk)
        account.proxy_url = ""
        account.save()  # any saved change (a new token, a new proxy) bumps updated_at
        orch.run_tick()
        assert builds[child.broker_user_id] == first + 1
    finally:
        orch.close()


def test_an_idle_tick_loads_the_days_instruments_so_the_event_tick_reads_none(monkeypatch):
    """The instrument list (lot sizes) was read by the first event of the day, inside its
    detection, a round trip and a parse that every child waited for (issue 17)."""
    desk = build_desk()
    reads: list[str] = []
    listing = PaperBroker.instruments

    def counted(self):
        reads.append(self.user_id if hasattr(self, "user_id") else "?")
        return listing(self)

    monkeypatch.setattr(PaperBroker, "instruments", counted)
    orch = Orchestrator(holder="warm", workers=0)
    try:
        orch.run_tick()
        assert len(reads) == 1  # loaded by the idle tick
        orch.run_tick()
        assert len(reads) == 1  # once a day

        desk.place("BUY", FUT, 150)
        event = orch.run_tick()
        assert event.events == 1 and event.intents >= 3
        assert len(reads) == 1  # the event tick read no instrument list
    finally:
        orch.close()


def test_an_idle_tick_whose_instrument_read_fails_is_still_an_idle_tick_and_the_event_reads_again(
    monkeypatch,
):
    from brokers.errors import BrokerUnavailable

    desk = build_desk()
    listing = PaperBroker.instruments
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 1:
            raise BrokerUnavailable("instrument dump unavailable")
        return listing(self)

    monkeypatch.setattr(PaperBroker, "instruments", flaky)
    orch = Orchestrator(holder="warm", workers=0)
    try:
        idle = orch.run_tick()
        assert idle.events == 0 and not idle.errors
        desk.place("BUY", FUT, 150)
        event = orch.run_tick()
        assert event.events == 1 and event.intents >= 3
        assert calls["n"] == 2
    finally:
        orch.close()


def test_an_idle_tick_that_built_clients_moves_the_long_lived_heap_out_of_the_collectors_way(builds):
    import gc

    build_desk()
    gc.unfreeze()
    orch = Orchestrator(holder="warm", workers=0, freeze_gc=True)
    try:
        orch.run_tick()
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        orch.run_tick()  # nothing built: nothing frozen again
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        orch.close()


def test_a_host_process_keeps_its_collector_to_itself(builds):
    """Only the engine's own process freezes: a test run, a shell or a queue worker that runs a
    tick is not made to pay a full collection of its whole heap (nor to keep its garbage)."""
    import gc

    build_desk()
    gc.unfreeze()
    orch = Orchestrator(holder="warm", workers=0)
    try:
        assert orch.run_tick().leader
        assert gc.get_freeze_count() == 0
    finally:
        orch.close()


def test_the_engine_command_freezes_the_collector_of_its_own_process(builds, monkeypatch):
    from replication.management.commands import run_orchestrator

    made = []
    real = run_orchestrator.Orchestrator
    monkeypatch.setattr(run_orchestrator, "Orchestrator", lambda **kw: made.append(kw) or real(**kw))
    monkeypatch.setattr(run_orchestrator, "install_signal_handlers", lambda stop: None)
    build_desk()
    try:
        call_command("run_orchestrator", "--max-ticks", "1", "--interval", "0.01", stdout=io.StringIO())
        call_command("run_orchestrator", "--once", stdout=io.StringIO())
    finally:
        import gc

        gc.unfreeze()
    assert [kw.get("freeze_gc") for kw in made] == [True, False]


def test_a_failing_instrument_list_is_tried_once_a_minute_by_idle_ticks_not_every_tick(monkeypatch):
    from brokers.errors import BrokerUnavailable
    from replication import instruments

    build_desk()
    calls = {"n": 0}

    def down(self):
        calls["n"] += 1
        raise BrokerUnavailable("instrument dump unavailable")

    monkeypatch.setattr(PaperBroker, "instruments", down)
    clock = {"t": 1000.0}
    orch = Orchestrator(holder="warm", workers=0)
    orch.instruments._clock = lambda: clock["t"]
    try:
        for _ in range(5):
            orch.run_tick()
        assert calls["n"] == 1
        clock["t"] += instruments.WARM_RETRY_AFTER_S + 1
        orch.run_tick()
        assert calls["n"] == 2
    finally:
        orch.close()


def test_garbage_an_earlier_freeze_kept_is_collected_when_clients_are_built_again(builds):
    import gc
    import weakref

    class Cycle:
        pass

    desk = build_desk()
    orch = Orchestrator(holder="warm", workers=0, freeze_gc=True)
    try:
        orch.run_tick()  # builds the clients and freezes
        old = Cycle()
        old.me = old  # only the cycle collector frees it
        gone = weakref.ref(old)
        gc.freeze()  # as if frozen by that idle tick while still in use
        del old
        account = Account.objects.get(pk=desk.children["C2"].pk)
        account.save()  # a changed child: the next idle tick builds its client again
        orch.run_tick()
        assert gone() is None
    finally:
        gc.unfreeze()
        orch.close()
