"""kite_sim's order-update WebSocket (kite/API.md §12): auth on the upgrade, postback-shaped frames."""

from __future__ import annotations

import json

import pytest
import websocket

from brokers.kite.client import KiteBroker
from brokers.kite.postback import checksum_valid, parse_order_update
from brokers.types import OrderRequest, OrderType, Product, Side
from lab.demo import FUT, build_desk
from tests.kite_sim_helpers import move_desk_to_kite, running_sim

pytestmark = pytest.mark.django_db(transaction=True)


def other_frames(ws: websocket.WebSocket) -> list[bytes | str]:
    """What a connection received until it fell silent for 0.5 s, heartbeats (1 byte) left out."""
    ws.settimeout(0.5)
    frames: list[bytes | str] = []
    try:
        while True:
            frame = ws.recv()
            if len(frame) != 1:
                frames.append(frame)
    except websocket.WebSocketTimeoutException:
        return frames


def test_a_wrong_token_is_refused_at_the_upgrade():
    with running_sim() as running:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(f"{running.ws_root}?api_key=nope&access_token=nope", timeout=5)
        assert refused.value.status_code == 403
        assert running.sim.feed.listeners() == 0


def test_a_filled_order_is_pushed_to_its_user_only_as_a_postback_shaped_update():
    with running_sim() as running:
        kdesk = move_desk_to_kite(build_desk(), running)
        running.sim.store.register_app(api_key=kdesk.sessions["MASTER"].api_key, api_secret="s3cret")
        master = kdesk.sessions["MASTER"]
        other = kdesk.sessions["C1"]
        ws_master = websocket.create_connection(
            f"{running.ws_root}?api_key={master.api_key}&access_token={master.access_token}", timeout=5
        )
        ws_other = websocket.create_connection(
            f"{running.ws_root}?api_key={other.api_key}&access_token={other.access_token}", timeout=1
        )
        try:
            broker = KiteBroker(api_key=master.api_key, access_token=master.access_token, root=running.root)
            order_id = broker.place_order(
                OrderRequest(
                    exchange="NFO",
                    tradingsymbol=FUT,
                    side=Side.BUY,
                    quantity=75,
                    product=Product.NRML,
                    order_type=OrderType.MARKET,
                    tag="feedtest1",
                )
            )
            frame = json.loads(ws_master.recv())
            assert frame["type"] == "order"
            data = frame["data"]
            assert data["user_id"] == "MASTER" and data["order_id"] == order_id
            order = parse_order_update(data)
            assert order.status.value == "COMPLETE" and order.filled_quantity == 75
            assert other_frames(ws_other) == []
        finally:
            ws_master.close()
            ws_other.close()
    assert checksum_valid(data, api_secret="s3cret")  # the app's secret signs it, as on a postback
