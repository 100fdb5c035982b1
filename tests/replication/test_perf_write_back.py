"""Issue 17 (engine CPU per child order): the write-back's audit rows are built without model
instances; what is written must stay the same row, field for field. Through run_tick on the paper
desk of DESIGN §3.6."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from replication.models import MappingStatus, OrderMapping, ReplicationEvent
from tests.engine_helpers import FUT

pytestmark = pytest.mark.django_db


def test_each_sent_order_writes_one_complete_audit_row(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    before = timezone.now()
    orch.run_tick()

    sent = list(OrderMapping.objects.filter(status=MappingStatus.OPEN).order_by("id"))
    assert sent, "the entry reached no child"
    for m in sent:
        row = ReplicationEvent.objects.get(mapping=m, kind="sent")
        assert row.actor == "engine"
        assert row.account_id == m.child_id
        assert row.allocation_id == m.allocation_id
        assert row.master_order_id is None
        assert row.message == f"{m.tag} {m.side} {m.quantity} {m.exchange}:{m.tradingsymbol} -> open"
        assert row.data == {
            "status": "open",
            "broker_order_id": m.broker_order_id,
            "code": "",
            "previous_status": "sending",
        }
        assert before <= row.created_at <= timezone.now()


def test_a_fill_writes_its_update_row_with_the_quantities(desk, orch):
    orch.run_tick()
    desk.place("BUY", FUT, 150)
    orch.run_tick()
    orch.run_tick()  # fills recorded by the follow-up

    filled = list(OrderMapping.objects.filter(status=MappingStatus.FILLED))
    assert filled, "no child order filled"
    for m in filled:
        row = ReplicationEvent.objects.get(mapping=m, kind="order_update")
        assert row.account_id == m.child_id and row.allocation_id == m.allocation_id
        assert row.message == (
            f"{m.tag} {m.side} {m.quantity} {m.exchange}:{m.tradingsymbol} -> filled"
            f" (filled {m.quantity}/{m.quantity})"
        )
        assert row.data["status"] == "filled" and row.data["previous_status"] == "open"
        assert row.data["filled_quantity"] == m.quantity and row.data["previous_filled_quantity"] == 0
        assert Decimal(row.data["average_price"]) == m.average_price  # as the broker said it
