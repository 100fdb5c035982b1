"""lab.sim_http, the plumbing the Angel, Dhan and Alice Blue simulators share: a loopback-only
threaded HTTP server handing lab.kite_sim.wire requests to a simulator's `handle`, and the
simulators' order-write windows."""

from __future__ import annotations

import pytest
import requests

from lab.kite_sim.wire import Request, Response
from lab.sim_http import RunningHttp, WriteLimiter, make_server, serve


class Echo:
    def __init__(self) -> None:
        self.seen: list[Request] = []

    def handle(self, request: Request) -> Response:
        self.seen.append(request)
        return Response.json_body(
            {
                "method": request.method,
                "path": request.path,
                "q": request.query,
                "body": request.body.decode(),
            }
        )


def test_a_simulator_is_served_on_loopback_and_stops():
    sim = Echo()
    server = make_server(sim)
    running = RunningHttp(sim=sim, server=server, thread=serve(server, name="echo-sim"))
    try:
        answer = requests.post(
            f"{running.root}/orders/place?x=1&y=", data=b"qty=5", headers={"X-PrivateKey": "k"}, timeout=5
        )
        assert answer.json() == {
            "method": "POST",
            "path": "/orders/place",
            "q": {"x": ["1"], "y": [""]},
            "body": "qty=5",
        }
        assert sim.seen[0].header("x-privatekey") == "k"
        assert running.root.startswith("http://127.0.0.1:")
    finally:
        running.stop()
    assert not running.thread.is_alive()


def test_only_loopback_addresses_are_served():
    with pytest.raises(ValueError, match="loopback"):
        make_server(Echo(), host="192.0.2.1")


def test_a_refused_write_does_not_count():
    now = [0.0]
    limiter = WriteLimiter(((1.0, 2), (60.0, 3)), clock=lambda: now[0])
    assert [limiter.allow("C1") for _ in range(3)] == [True, True, False]
    assert limiter.allow("C2")  # per account
    now[0] = 1.5
    assert [limiter.allow("C1") for _ in range(2)] == [True, False]  # the minute's third, not a fourth
