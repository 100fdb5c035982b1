"""Issue 12 item 6: the postback endpoint does not tell a linked Zerodha id from an unknown one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from brokers.kite.postback import postback_checksum
from replication.models import MappingStatus, ReplicationEvent
from tests.factories import KiteAccountFactory
from tests.kite_factories import OrderMappingFactory
from tests.kite_http import fixture_json

pytestmark = pytest.mark.django_db

VECTOR = fixture_json("handmade/postback_checksum_testvector.json")
SECRET = VECTOR["api_secret"]


def post(body: Any):
    client = Client(raise_request_exception=False)
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(reverse("kite:postback"), data=data, content_type="application/json", secure=True)


def forged(user_id: str) -> dict[str, Any]:
    """A postback for `user_id` signed with a secret that is not the account's."""
    body = {**VECTOR["payload"], "user_id": user_id}
    body["checksum"] = postback_checksum(
        order_id=str(body["order_id"]), order_timestamp=body["order_timestamp"], api_secret="guessed"
    )
    return body


def test_postback_answers_an_unknown_user_and_a_bad_checksum_alike():
    """Issue 12 item 6: same status and body for an unlinked Zerodha id and a linked one."""
    child = KiteAccountFactory(broker_user_id="AB1234", api_secret=SECRET)
    mapping = OrderMappingFactory(child=child, broker_order_id=VECTOR["payload"]["order_id"])

    linked = post(forged("AB1234"))
    unknown = post(forged("ZZ9999"))
    unreadable = post(b"not json")

    assert linked.status_code == unknown.status_code == unreadable.status_code == 400
    assert linked.content == unknown.content == unreadable.content
    assert "ZZ9999" not in unknown.content.decode() and "AB1234" not in linked.content.decode()
    mapping.refresh_from_db()
    assert mapping.status == MappingStatus.OPEN
    assert not ReplicationEvent.objects.filter(kind="order_update").exists()
