"""`manage.py kite_sim --port P [--host 127.0.0.1] [--config sim.json]`: serve the paper exchange
over HTTP with Kite Connect v3's routes (lab.kite_sim), until SIGTERM or Ctrl-C.

Prints the root URL to point `KITE_API_ROOT` at, then the order-update WebSocket's root
(`KITE_WS_ROOT`). `--memory-orders` is the bench's mode (lab.kite_sim.fast). Loopback addresses
only. `--config` loads apps, sessions and faults from a JSON file (see `KiteSim.configure`); more
can be added at run time through the `/_sim/...` admin routes.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.kite_sim.fast import MemoryBook, MemoryFront
from lab.kite_sim.faults import FaultSpecError, OrderRateLimiter
from lab.kite_sim.server import KiteSim, RunningSim, start


def run_kite_sim(
    *,
    host: str,
    port: int,
    config: dict[str, Any] | None = None,
    order_rate: int = 10,
    memory_orders: bool = False,
    persist_users: frozenset[str] = frozenset(),
) -> RunningSim | MemoryFront:
    """Start the simulator (configured) in a background thread; the caller stops it. With
    `memory_orders`, the bench's front (lab.kite_sim.fast): order writes of every user not in
    `persist_users` answered from memory on an event loop."""
    sim = KiteSim(limiter=OrderRateLimiter(per_second=order_rate))
    if config:
        sim.configure(config)
    if memory_orders:
        return MemoryFront(sim, MemoryBook(persist=persist_users)).start(host=host, port=port)
    return start(sim=sim, host=host, port=port)


class Command(BaseCommand):
    help = "Serve the paper exchange with Kite Connect v3 routes (a Kite simulator) on 127.0.0.1."
    # The simulator uses no URLconf, templates or admin: the project's system checks are not its
    # business, and a broken view elsewhere must not keep the tests' broker from starting.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, required=True, help="TCP port (0 picks a free one).")
        parser.add_argument(
            "--host", default="127.0.0.1", help="Loopback address to bind (default 127.0.0.1)."
        )
        parser.add_argument("--config", type=Path, help="JSON file with apps, sessions and faults to load.")
        parser.add_argument(
            "--order-rate", type=int, default=10, help="Order writes per second per account (default 10)."
        )
        parser.add_argument(
            "--memory-orders",
            action="store_true",
            help="Bench mode: answer order writes from memory on an event loop (lab.kite_sim.fast); "
            "the order-update WebSocket moves to a port of its own (printed on the second line).",
        )
        parser.add_argument(
            "--persist-user",
            action="append",
            default=[],
            help="With --memory-orders: a user whose orders still go to the paper exchange (repeatable).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = None
        if options["config"] is not None:
            try:
                config = json.loads(options["config"].read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {options['config']}: {exc}") from None
        if not 0 <= options["port"] <= 65535:
            raise CommandError(f"--port must be between 0 and 65535, got {options['port']}")
        if options["order_rate"] < 1:
            raise CommandError("--order-rate must be at least 1")
        if options["persist_user"] and not options["memory_orders"]:
            raise CommandError("--persist-user needs --memory-orders")
        try:
            running = run_kite_sim(
                host=options["host"],
                port=options["port"],
                config=config,
                order_rate=options["order_rate"],
                memory_orders=options["memory_orders"],
                persist_users=frozenset(options["persist_user"]),
            )
        except (ValueError, KeyError, TypeError, FaultSpecError, OSError) as exc:
            raise CommandError(f"cannot start the Kite simulator: {exc}") from None
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(running.root)
        self.stdout.write(running.ws_root)  # the order-update WebSocket (KITE_WS_ROOT)
        self.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            running.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Kite simulator stopped.")
