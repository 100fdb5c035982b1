"""`manage.py alice_sim --port P [--ws-port W] [--host 127.0.0.1] [--config sim.json]`: serve the
paper exchange over HTTP with Alice Blue's Ant-A3 routes (lab.alice_sim), and its order feed on a
loopback WebSocket, until SIGTERM or Ctrl-C.

Prints the base URL to point `ALICE_API_ROOT` at (with its trailing `/`), then the order feed's URL.
Loopback addresses only. `--config` loads clients (user id, app code, api secret) and faults from a
JSON file (see `AliceSim.configure`); more can be added at run time through `POST /_sim/clients`
(which answers an auth code for the vendor login too), `POST /_sim/auth-code` and `POST /_sim/faults`.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.alice_sim.server import AliceSim, RunningSim, start
from lab.kite_sim.faults import FaultSpecError


def run_alice_sim(
    *, host: str, port: int, ws_port: int = 0, config: dict[str, Any] | None = None
) -> RunningSim:
    """Start the simulator (configured) in background threads; the caller stops it."""
    sim = AliceSim()
    if config:
        sim.configure(config)
    return start(sim=sim, host=host, port=port, ws_port=ws_port)


class Command(BaseCommand):
    help = "Serve the paper exchange with Alice Blue (Ant-A3) routes and order feed on 127.0.0.1."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, required=True, help="TCP port (0 picks a free one).")
        parser.add_argument("--ws-port", type=int, default=0, help="The order feed's port (0: any free one).")
        parser.add_argument(
            "--host", default="127.0.0.1", help="Loopback address to bind (default 127.0.0.1)."
        )
        parser.add_argument("--config", type=Path, help="JSON file with clients and faults to load.")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("port", "ws_port"):
            if not 0 <= options[name] <= 65535:
                raise CommandError(
                    f"--{name.replace('_', '-')} must be between 0 and 65535, got {options[name]}"
                )
        config = None
        if options["config"] is not None:
            try:
                config = json.loads(options["config"].read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {options['config']}: {exc}") from None
        try:
            running = run_alice_sim(
                host=options["host"], port=options["port"], ws_port=options["ws_port"], config=config
            )
        except (ValueError, KeyError, TypeError, FaultSpecError, OSError) as exc:
            raise CommandError(f"cannot start the Alice Blue simulator: {exc}") from None
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(running.root)
        self.stdout.write(running.ws_root)
        self.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            running.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Alice Blue simulator stopped.")
