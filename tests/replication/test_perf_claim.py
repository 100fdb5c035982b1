"""Issue 17: the claim reads its intents back only when it did not win all of them. An intent
another sender claimed first (SENDING under its epoch) is not sent again by this tick."""

from __future__ import annotations

import pytest

from brokers.paper.models import PaperOrder
from replication import failpoints
from replication.failpoints import FailpointTriggered
from replication.lease import lease_acquire
from replication.models import MappingStatus, OrderMapping
from tests.engine_helpers import FUT

pytestmark = pytest.mark.django_db


def _planned_after_a_crash(desk, orch) -> list[OrderMapping]:
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    with failpoints.active({"after_intent_commit": "raise"}), pytest.raises(FailpointTriggered):
        orch.run_tick()
    planned = list(OrderMapping.objects.filter(status=MappingStatus.PLANNED).order_by("id"))
    assert len(planned) >= 2, "the crashed tick left too few intents to claim"
    return planned


def test_every_planned_intent_is_claimed_and_sent_once(desk, orch):
    planned = _planned_after_a_crash(desk, orch)

    orch.run_tick()

    for m in planned:
        m.refresh_from_db()
        assert m.status == MappingStatus.OPEN and m.attempts == 1 and m.sent_at is not None
        assert PaperOrder.objects.filter(account__user_id=m.child.broker_user_id).count() == 1


def test_an_intent_claimed_by_another_sender_is_left_to_it(desk, orch):
    planned = _planned_after_a_crash(desk, orch)
    taken = planned[0]
    OrderMapping.objects.filter(pk=taken.pk).update(status=MappingStatus.SENDING, epoch=10_000)
    sender = orch.replicator(lease_acquire(holder=orch.holder, ttl=orch.lease_ttl))

    report = sender.dispatch()  # what a tick's send stage (or a queue-mode shard task) runs

    assert report.sent == len(planned) - 1

    taken.refresh_from_db()
    assert taken.status == MappingStatus.SENDING and taken.epoch == 10_000 and taken.attempts == 0
    assert not PaperOrder.objects.filter(account__user_id=taken.child.broker_user_id).exists()
    for m in planned[1:]:
        m.refresh_from_db()
        assert m.status == MappingStatus.OPEN and m.attempts == 1
        assert PaperOrder.objects.filter(account__user_id=m.child.broker_user_id).count() == 1
