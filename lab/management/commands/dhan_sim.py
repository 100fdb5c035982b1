"""`manage.py dhan_sim --port P [--ws-port W] [--host 127.0.0.1] [--config sim.json]`: serve the
paper exchange over HTTP with DhanHQ v2's routes (lab.dhan_sim), and its order-update WebSocket on
a second port, until SIGTERM or Ctrl-C.

Prints the root URL to point `DHAN_API_ROOT` at, then the ws:// root for `DHAN_WS_ROOT`. Loopback
addresses only. `--config` loads clients (client id, PIN, TOTP secret, api key) and faults from a
JSON file (see `DhanSim.configure`); more through `POST /_sim/clients` and `POST /_sim/faults`.

`manage.py dhan_sim --link-demo CHILD2,CHILD5 --write-config .dhan-sim.json` serves nothing: it moves
those demo accounts to Dhan with fresh simulator credentials and writes the `--config` file (0600,
it holds their PINs and TOTP secrets) the serving command then loads.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Account
from accounts.validation import AccountError
from lab.dhan_demo import dhan_demo_config
from lab.dhan_sim.server import DhanSim, RunningSim, start
from lab.kite_sim.faults import FaultSpecError
from lab.management.commands.angel_sim import write_private_json


def run_dhan_sim(
    *, host: str, port: int, ws_port: int = 0, config: dict[str, Any] | None = None
) -> RunningSim:
    """Start the simulator (configured) in background threads; the caller stops it."""
    sim = DhanSim()
    if config:
        sim.configure(config)
    return start(sim=sim, host=host, port=port, ws_port=ws_port)


class Command(BaseCommand):
    help = "Serve the paper exchange with DhanHQ v2 routes and order-update socket (a Dhan simulator)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, help="TCP port (0 picks a free one); required to serve.")
        parser.add_argument(
            "--ws-port", type=int, default=0, help="Order-update WebSocket port (0: a free one)."
        )
        parser.add_argument(
            "--host", default="127.0.0.1", help="Loopback address to bind (default 127.0.0.1)."
        )
        parser.add_argument("--config", type=Path, help="JSON file with clients and faults to load.")
        parser.add_argument(
            "--link-demo", metavar="USER_IDS", help="Demo accounts to move to Dhan; serves nothing."
        )
        parser.add_argument("--write-config", type=Path, help="Where --link-demo writes the --config file.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["link_demo"] is not None:
            self._link_demo(options["link_demo"], options["write_config"])
            return
        if options["port"] is None:
            raise CommandError("--port is required to serve")
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
            running = run_dhan_sim(
                host=options["host"], port=options["port"], ws_port=options["ws_port"], config=config
            )
        except (ValueError, KeyError, TypeError, FaultSpecError, OSError) as exc:
            raise CommandError(f"cannot start the Dhan simulator: {exc}") from None
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
        self.stdout.write("Dhan simulator stopped.")

    def _link_demo(self, user_ids: str, path: Path | None) -> None:
        if path is None:
            raise CommandError("--link-demo needs --write-config PATH")
        wanted = [u.strip() for u in user_ids.split(",") if u.strip()]
        if not wanted:
            raise CommandError("--link-demo: no user ids")
        try:
            config = dhan_demo_config(user_ids=wanted)
        except (Account.DoesNotExist, AccountError) as exc:
            raise CommandError(f"cannot move {', '.join(wanted)} to Dhan: {exc}") from None
        write_private_json(path, config)
        self.stdout.write(
            f"moved {', '.join(c['client_id'] for c in config['clients'])} to Dhan; wrote {path}"
        )
