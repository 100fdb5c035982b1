"""Kite order postbacks: checksum, the endpoint, forward-only updates of child order mappings."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import Broker
from brokers.kite.postback import checksum_valid, parse_order_update, postback_checksum
from brokers.types import OrderStatus
from replication.models import MappingStatus, OrderMapping, ReplicationEvent
from replication.order_updates import mapping_apply_broker_update
from tests.factories import KiteAccountFactory, MasterAccountFactory
from tests.kite_factories import OrderMappingFactory
from tests.kite_http import fixture_json

pytestmark = pytest.mark.django_db

VECTOR = fixture_json("handmade/postback_checksum_testvector.json")
SECRET = VECTOR["api_secret"]
ORDER_ID = VECTOR["payload"]["order_id"]


def payload(**changes: Any) -> dict[str, Any]:
    """The test vector's payload with `changes`, checksum recomputed (a genuine Kite postback)."""
    body = {**VECTOR["payload"], **changes}
    body["checksum"] = postback_checksum(
        order_id=str(body["order_id"]), order_timestamp=body["order_timestamp"], api_secret=SECRET
    )
    return body


@pytest.fixture
def child():
    return KiteAccountFactory(broker_user_id="AB1234", api_secret=SECRET)


@pytest.fixture
def mapping(child) -> OrderMapping:
    return OrderMappingFactory(child=child, broker_order_id=ORDER_ID, quantity=10, lots=10)


def post(client, body: Any):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(reverse("kite:postback"), data=data, content_type="application/json")


def order_events() -> int:
    return ReplicationEvent.objects.filter(kind="order_update").count()


# --- checksum ----------------------------------------------------------------------------------


def test_checksum_test_vector_verifies():
    assert checksum_valid(VECTOR["payload"], api_secret=SECRET)
    assert (
        postback_checksum(
            order_id=ORDER_ID, order_timestamp=VECTOR["payload"]["order_timestamp"], api_secret=SECRET
        )
        == VECTOR["payload"]["checksum"]
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"order_id": "220303000308933"},
        {"order_timestamp": "2022-03-03 09:24:26"},
        {"checksum": "0" * 64},
        {"checksum": None},
        {"checksum": ""},
        {"order_timestamp": None},
    ],
)
def test_checksum_refuses_tampered_payloads(changes):
    assert not checksum_valid({**VECTOR["payload"], **changes}, api_secret=SECRET)


def test_checksum_refuses_another_secret_and_the_zerodha_sample():
    assert not checksum_valid(VECTOR["payload"], api_secret="another_secret")
    assert not checksum_valid(fixture_json("postback.json"), api_secret=SECRET)
    assert not checksum_valid(VECTOR["payload"], api_secret="")


def test_postback_payload_parses_into_an_order():
    order = parse_order_update(fixture_json("postback.json"))
    assert order.order_id == ORDER_ID
    assert order.status == OrderStatus.COMPLETE
    assert order.filled_quantity == 1
    assert order.average_price == Decimal("470")
    assert order.tag == ""


# --- endpoint ----------------------------------------------------------------------------------


def test_postback_moves_the_child_order_to_filled(client, mapping):
    response = post(client, VECTOR["payload"])
    assert response.status_code == 200
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.FILLED
    assert mapping.filled_quantity == 1
    assert mapping.average_price == Decimal("470")
    assert mapping.broker_status == "COMPLETE"
    assert mapping.finished_at is not None
    event = ReplicationEvent.objects.get(kind="order_update", mapping=mapping)
    assert event.account_id == mapping.child_id
    assert event.data["source"] == "postback"
    assert event.data["status_before"] == MappingStatus.OPEN


@pytest.mark.parametrize(
    "body",
    [
        payload(order_timestamp="2022-03-03 09:24:26") | {"checksum": VECTOR["payload"]["checksum"]},
        {**VECTOR["payload"], "checksum": "f" * 64},
        {k: v for k, v in VECTOR["payload"].items() if k != "checksum"},
        payload(user_id="ZZ9999"),
        b"not json",
        b"[1, 2]",
    ],
    ids=["tampered-timestamp", "wrong-checksum", "no-checksum", "unknown-user", "not-json", "not-an-object"],
)
def test_postback_refuses_bad_postbacks_and_changes_nothing(client, mapping, body):
    response = post(client, body)
    assert response.status_code == 400
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.OPEN
    assert mapping.filled_quantity == 0
    assert order_events() == 0


def test_postback_refuses_a_paper_account_with_the_same_user_id(client):
    KiteAccountFactory(broker=Broker.PAPER, broker_user_id="AB1234", api_secret=SECRET)
    assert post(client, VECTOR["payload"]).status_code == 400


def test_postback_needs_no_csrf_token(mapping):
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(reverse("kite:postback"), data=VECTOR["payload"], content_type="application/json")
    assert response.status_code == 200
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.FILLED


def test_postback_accepts_only_post(client, mapping):
    assert client.get(reverse("kite:postback")).status_code == 405


def test_postback_duplicates_are_harmless(client, mapping):
    for _ in range(3):
        assert post(client, VECTOR["payload"]).status_code == 200
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.FILLED
    assert order_events() == 1


def test_postback_out_of_order_deliveries_never_move_backwards(client, mapping):
    partial_6 = payload(
        status="UPDATE", filled_quantity=6, pending_quantity=4, average_price=470.5, quantity=10
    )
    partial_3 = payload(
        status="UPDATE", filled_quantity=3, pending_quantity=7, average_price=470, quantity=10
    )
    complete = payload(
        status="COMPLETE", filled_quantity=10, pending_quantity=0, average_price=471, quantity=10
    )

    assert post(client, partial_6).status_code == 200
    mapping.refresh_from_db()
    assert (mapping.status, mapping.filled_quantity, mapping.average_price) == (
        MappingStatus.OPEN,
        6,
        Decimal("470.5"),
    )

    assert post(client, partial_3).status_code == 200  # older than what we know
    mapping.refresh_from_db()
    assert (mapping.filled_quantity, mapping.average_price) == (6, Decimal("470.5"))

    assert post(client, complete).status_code == 200
    assert post(client, partial_6).status_code == 200  # a late partial after the fill
    mapping.refresh_from_db()
    assert (mapping.status, mapping.filled_quantity, mapping.average_price) == (
        MappingStatus.FILLED,
        10,
        Decimal("471"),
    )
    assert order_events() == 2


def test_postback_finds_an_unknown_outcome_by_tag(client, child):
    mapping = OrderMappingFactory(
        child=child, status=MappingStatus.UNKNOWN, broker_order_id="", tag="RPL0001A"
    )
    assert post(client, payload(tag="RPL0001A", status="OPEN", filled_quantity=0)).status_code == 200
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.OPEN
    assert mapping.broker_order_id == ORDER_ID
    assert mapping.acked_at is not None


def test_postback_records_a_rejection_reason(client, mapping):
    rejected = payload(status="REJECTED", filled_quantity=0, status_message="Insufficient funds")
    assert post(client, rejected).status_code == 200
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.REJECTED
    assert mapping.reason == "Insufficient funds"
    assert mapping.reason_code == "broker_rejected"


def test_postback_leaves_an_order_being_sent_to_the_replicator(client, child):
    sending = OrderMappingFactory(
        child=child, status=MappingStatus.SENDING, broker_order_id="", tag="RPL0002A"
    )
    assert post(client, payload(tag="RPL0002A")).status_code == 200
    sending.refresh_from_db()
    assert sending.status == MappingStatus.SENDING
    assert order_events() == 0


def test_postback_touches_only_the_posting_childs_orders(client, child):
    other = KiteAccountFactory(broker_user_id="CD5678", api_secret="other_secret_value")
    theirs = OrderMappingFactory(child=other, broker_order_id=ORDER_ID)
    assert post(client, VECTOR["payload"]).status_code == 200
    theirs.refresh_from_db()
    assert theirs.status == MappingStatus.OPEN


def test_postback_for_an_unknown_order_is_acknowledged(client, child):
    response = post(client, VECTOR["payload"])
    assert response.status_code == 200
    assert response.json()["message"] == "no matching child order"


def test_postback_ignores_unmodelled_products(client, mapping):
    assert post(client, payload(product="CO")).status_code == 200
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.OPEN


def test_postback_for_the_master_wakes_the_orchestrator(client, tmp_path):
    MasterAccountFactory(broker=Broker.KITE, broker_user_id="AB1234", api_secret=SECRET)
    wake = tmp_path / "wake"
    with override_settings(WAKE_FILE=str(wake)):
        assert post(client, VECTOR["payload"]).status_code == 200
    assert wake.exists()
    assert os.stat(wake).st_mtime_ns > 0


# --- the service directly ----------------------------------------------------------------------


def test_mapping_apply_broker_update_returns_none_for_orders_outside_the_engine(child):
    order = parse_order_update(VECTOR["payload"])
    assert mapping_apply_broker_update(order=order, source="test") is None
    assert order_events() == 0


def test_mapping_apply_broker_update_ignores_a_tag_that_maps_to_another_order(child):
    mapping = OrderMappingFactory(child=child, broker_order_id="999", tag="RPL0003A")
    order = parse_order_update(payload(tag="RPL0003A"))
    assert mapping_apply_broker_update(order=order, source="test", child=child) == mapping
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.OPEN
    assert order_events() == 0
