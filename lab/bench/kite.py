"""The Kite path against the simulator's memory mode: the master's order placed through the SDK
while the orchestrator loop polls (or is woken by the order stream), the simulator's own figures,
and a sequential loop of SDK calls to compare the fan-out with."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from kiteconnect import KiteConnect

from brokers.kite import params
from brokers.kite.client import KiteBroker
from brokers.kite.stream import OrderUpdateStream
from brokers.types import Order, OrderRequest, OrderType, Product, Side
from lab.bench.config import FUT, MASTER_USER_ID, BenchConfig, BenchError
from lab.bench.desk import SimSession
from replication.engine.result import TickResult
from replication.orchestrator import Orchestrator
from replication.wakeup import wait_for_wakeup, wake

logger = logging.getLogger(__name__)

MASTER_TAG = "benchmaster1"


def loop_sessions(n: int) -> list[SimSession]:
    """Sessions of the sequential loop's accounts (L00000...): answered from memory, no Account."""
    import secrets

    return [SimSession(f"L{i:05d}", secrets.token_hex(8), secrets.token_hex(16)) for i in range(n)]


@dataclass
class SimFigures:
    """The simulator's counters between two `GET /_sim/stats`."""

    requests: int
    cpu_s: float

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1000 / self.requests if self.requests else 0.0


def sim_delta(before: dict[str, Any], after: dict[str, Any]) -> SimFigures:
    return SimFigures(
        requests=int(after["answered"]) - int(before["answered"]),
        cpu_s=float(after["cpu_s"]) - float(before["cpu_s"]),
    )


class CpuSampler:
    """This process's CPU clock sampled every few milliseconds (a daemon thread), to tell how much
    CPU went into a window of the tick given as perf_counter() instants (the send phase)."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.samples: list[tuple[float, float]] = []
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append((time.perf_counter(), time.process_time()))

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _at(self, perf: float) -> float:
        before = [cpu for t, cpu in self.samples if t <= perf]
        after = [cpu for t, cpu in self.samples if t >= perf]
        if before:
            return before[-1]
        return after[0] if after else 0.0

    def between(self, start: float, end: float) -> float:
        return max(0.0, self._at(end) - self._at(start))


@dataclass
class EventTick:
    """The tick that replicated the master's order, and how long detection took."""

    result: TickResult
    queries: int
    cpu_s: float  # this process's CPU during the event tick (the engine: tick, pool, SDK, HTTP)
    tick_wall: float  # wall-clock instant the event tick started
    tick_perf: float  # the same instant on perf_counter()
    placed_wall: float  # the master's place_order call returned (the order is in its book)
    first_child_wall: float | None  # the simulator received the first child order
    detect: str
    send_cpu_s: float = 0.0  # this process's CPU during the send phase (SDK, HTTP, the workers)

    @property
    def tick_lag_ms(self) -> float:
        """Placement -> the start of the tick that acted on it (negative: the tick was under way)."""
        return (self.tick_wall - self.placed_wall) * 1000

    @property
    def detection_ms(self) -> float | None:
        if self.first_child_wall is None:
            return None
        return (self.first_child_wall - self.placed_wall) * 1000


def event_via_sdk(
    config: BenchConfig,
    orch: Orchestrator,
    master: SimSession,
    *,
    root: str,
    ws_root: str,
    progress: Any,
) -> EventTick:
    """Run the orchestrator loop (ticks every POLL_INTERVAL, woken early by `wake()`) in a thread,
    place the master's order through the SDK at a random moment of the poll interval, and return
    the first tick that acted on it. With `detect="stream"` the master's order stream (KiteTicker
    on the simulator's WebSocket) wakes the loop."""
    interval = float(settings.POLL_INTERVAL)
    stop = threading.Event()
    found: dict[str, Any] = {}
    failures: list[Exception] = []
    stream: OrderUpdateStream | None = None
    if config.detect == "stream":

        def on_order(order: Order) -> None:
            wake(order)

        stream = OrderUpdateStream(
            api_key=master.api_key,
            access_token=master.access_token,
            on_order=on_order,
            root=ws_root,
            user_id=MASTER_USER_ID,
        )
        stream.start()
        if not stream.connected.wait(30):
            stream.stop()
            raise BenchError(f"the order stream did not connect to {ws_root}")
        progress(f"order stream connected to {ws_root}")

    def loop() -> None:
        try:
            deadline = time.monotonic() + config.wait_s
            while not stop.is_set() and time.monotonic() < deadline:
                cpu0, wall0, perf0 = time.process_time(), time.time(), time.perf_counter()
                with CaptureQueriesContext(connection) as queries:
                    result = orch.run_tick()
                cpu = time.process_time() - cpu0
                if result.errors:
                    raise BenchError("; ".join(result.errors))
                if result.intents or result.dispatch.sent or result.queued_shards:
                    found.update(result=result, queries=len(queries), cpu=cpu, wall=wall0, perf=perf0)
                    return
                wait_for_wakeup(stop=stop, timeout=interval)
        except Exception as exc:  # noqa: BLE001  (handed to the caller, which raises it)
            failures.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=loop, name="bench-orchestrator-loop", daemon=True)
    sampler = CpuSampler().__enter__()
    thread.start()
    try:
        time.sleep(config.rng.uniform(0.1, interval))  # a random phase of the poll interval
        broker = KiteBroker(
            api_key=master.api_key, access_token=master.access_token, root=root, user_id=MASTER_USER_ID
        )
        broker.place_order(
            OrderRequest(
                exchange="NFO",
                tradingsymbol=FUT,
                side=Side.BUY,
                quantity=150,
                product=Product.NRML,
                order_type=OrderType.MARKET,
                tag=MASTER_TAG,
            )
        )
        placed_wall = time.time()
        thread.join(timeout=config.wait_s)
    finally:
        stop.set()
        thread.join(timeout=30)
        sampler.__exit__()
        if stream is not None:
            stream.stop()
    if failures:
        raise BenchError(f"the orchestrator loop failed: {failures[0]!r}") from failures[0]
    if "result" not in found:
        raise BenchError(f"no tick acted on the master's order within {config.wait_s:.0f} s")
    dispatch = found["result"].dispatch
    send_cpu = (
        sampler.between(dispatch.send_started, dispatch.last_send_done)
        if dispatch.send_started is not None and dispatch.last_send_done is not None
        else 0.0
    )
    return EventTick(
        send_cpu_s=send_cpu,
        result=found["result"],
        queries=found["queries"],
        cpu_s=found["cpu"],
        tick_wall=found["wall"],
        tick_perf=found["perf"],
        placed_wall=placed_wall,
        first_child_wall=None,  # read from the simulator once the fan-out is over
        detect=config.detect,
    )


@dataclass
class LoopResult:
    """A sequential loop of `KiteConnect.place_order` calls (one client per account, in a row)."""

    calls: int
    wall_s: float
    cpu_s: float
    median_call_s: float

    def extrapolated_s(self, n: int) -> float:
        return self.wall_s / self.calls * n


def sequential_loop(root: str, sessions: list[SimSession]) -> LoopResult:
    """Place one order per session with the plain SDK, one call after the other (the same
    arguments as the engine's)."""
    arguments = params.order_params(
        OrderRequest(
            exchange="NFO",
            tradingsymbol=FUT,
            side=Side.BUY,
            quantity=75,
            product=Product.NRML,
            order_type=OrderType.MARKET,
            tag="benchloop",
        ),
        market_protection=int(settings.KITE_MARKET_PROTECTION),
        algo_id=str(settings.KITE_ALGO_ID),
    )
    clients = [KiteConnect(s.api_key, access_token=s.access_token, root=root, timeout=30) for s in sessions]
    calls: list[float] = []
    cpu0, start = time.process_time(), time.perf_counter()
    for kite in clients:
        t = time.perf_counter()
        kite.place_order(**arguments)
        calls.append(time.perf_counter() - t)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return LoopResult(calls=len(calls), wall_s=wall, cpu_s=cpu, median_call_s=statistics.median(calls))
