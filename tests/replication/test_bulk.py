"""replication.bulk: the engine's bulk writes (executemany on SQLite, COPY on PostgreSQL).

`make test-pg` runs these on PostgreSQL too, where insert_rows goes through the raw cursor.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from replication.bulk import insert_rows, update_rows
from replication.models import Allocation, OrderMapping, ReplicationEvent
from tests.dashboard_factories import AllocationFactory
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

SENT = datetime(2026, 12, 1, 3, 45, 12, 345_000, tzinfo=UTC)


def _intents(
    count: int, *, tag_prefix: str = "R1C", allocation: Allocation | None = None
) -> list[OrderMapping]:
    allocation = allocation or AllocationFactory()
    children = [AccountFactory() for _ in range(count)]
    return [
        OrderMapping(
            allocation=allocation,
            child=child,
            tag=f"{tag_prefix}{i}S0",
            exchange="NFO",
            tradingsymbol="NIFTY25DECFUT",
            product="NRML",
            side="BUY",
            price=Decimal("24500.05"),
            lots=2,
            quantity=150,
            capital=Decimal("1234567.89"),
            target_margin=None,
            reason="share ₹1,50,000.00",
            sent_at=SENT,
        )
        for i, child in enumerate(children)
    ]


def test_insert_rows_writes_every_value_as_django_reads_it_back():
    intents = _intents(3)
    with transaction.atomic():
        assert insert_rows(OrderMapping, intents) == 3
    stored = {m.tag: m for m in OrderMapping.objects.all()}
    assert sorted(stored) == ["R1C0S0", "R1C1S0", "R1C2S0"]
    for intent in intents:
        m = stored[intent.tag]
        assert (m.allocation_id, m.child_id) == (intent.allocation_id, intent.child_id)
        assert (m.price, m.capital, m.target_margin) == (Decimal("24500.05"), Decimal("1234567.89"), None)
        assert (m.lots, m.quantity, m.status, m.reason) == (2, 150, "planned", "share ₹1,50,000.00")
        assert m.sent_at == SENT and m.acked_at is None
        assert m.created_at is not None and m.created_at == m.updated_at  # stamped, aware
        assert m.created_at.tzinfo is not None


def test_insert_rows_writes_json_and_empty_references():
    event = ReplicationEvent(kind="sent", message="R1C0S0 -> open", data={"status": "open", "code": ""})
    insert_rows(ReplicationEvent, [event])
    (stored,) = ReplicationEvent.objects.all()
    assert (stored.kind, stored.data, stored.account_id, stored.mapping_id) == (
        "sent",
        {"status": "open", "code": ""},
        None,
        None,
    )


def test_insert_rows_is_one_query_whatever_the_number_of_rows():
    allocation = AllocationFactory()
    few = _intents(2, tag_prefix="A", allocation=allocation)
    many = _intents(40, tag_prefix="B", allocation=allocation)
    counts = []
    for rows in (few, many):
        with CaptureQueriesContext(connection) as queries:
            insert_rows(OrderMapping, rows)
        counts.append(len(queries))
    assert counts == [1, 1]
    assert OrderMapping.objects.count() == 42


def test_insert_rows_duplicate_tag_is_an_integrity_error_and_writes_nothing():
    allocation = AllocationFactory()
    insert_rows(OrderMapping, _intents(1, allocation=allocation))
    again = _intents(2, allocation=allocation)  # "R1C0S0" again, then a new tag
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(OrderMapping, again)
    assert list(OrderMapping.objects.values_list("tag", flat=True)) == ["R1C0S0"]


def test_update_rows_writes_the_fields_and_stamps_auto_now():
    insert_rows(OrderMapping, _intents(2))
    mappings = list(OrderMapping.objects.order_by("tag"))
    before = mappings[0].updated_at
    for m in mappings:
        m.status, m.broker_order_id, m.latency_ms = "open", f"id-{m.tag}", 42
    assert update_rows(mappings, ["status", "broker_order_id", "latency_ms", "updated_at"]) == 2
    stored = list(OrderMapping.objects.order_by("tag").values_list("status", "broker_order_id", "latency_ms"))
    assert stored == [("open", "id-R1C0S0", 42), ("open", "id-R1C1S0", 42)]
    assert OrderMapping.objects.order_by("tag").first().updated_at > before


@pytest.mark.parametrize(
    "count", [2, 25]
)  # PostgreSQL: per row below COPY_UPDATE_MIN_ROWS, a temp table above
def test_update_rows_many_rows_with_nulls_and_times(count):
    insert_rows(OrderMapping, _intents(count))
    mappings = list(OrderMapping.objects.order_by("id"))
    for n, m in enumerate(mappings):
        m.status, m.acked_at, m.latency_ms = "open", SENT, n
        m.capital = None
        m.average_price = Decimal("24501.10")
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        update_rows(mappings, ["status", "acked_at", "latency_ms", "capital", "average_price", "updated_at"])
    assert len(queries) < 10  # one statement per row would be `count` queries on PostgreSQL
    stored = list(
        OrderMapping.objects.order_by("id").values_list(
            "status", "acked_at", "latency_ms", "capital", "average_price"
        )
    )
    assert stored == [("open", SENT, n, None, Decimal("24501.10")) for n in range(count)]
    untouched = OrderMapping.objects.filter(tradingsymbol="NIFTY25DECFUT", quantity=150).count()
    assert untouched == count  # columns not named keep their values


def test_update_rows_failure_changes_nothing_and_the_next_update_works():
    insert_rows(OrderMapping, _intents(25))
    mappings = list(OrderMapping.objects.order_by("id"))
    for m in mappings:
        m.reason = "changed"
    mappings[-1].tag = mappings[0].tag  # a duplicate tag: the whole update must fail
    with pytest.raises(IntegrityError), transaction.atomic():
        update_rows(mappings, ["reason", "tag"])
    assert set(OrderMapping.objects.values_list("reason", flat=True)) == {"share ₹1,50,000.00"}
    mappings[-1].tag = "R1C24S0"
    with transaction.atomic():  # PostgreSQL: the temporary table of the failed update is gone
        update_rows(mappings, ["reason", "tag"])
    assert set(OrderMapping.objects.values_list("reason", flat=True)) == {"changed"}
