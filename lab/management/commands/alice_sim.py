"""`manage.py alice_sim --port P [--ws-port W] [--host 127.0.0.1] [--config sim.json]`: serve the
paper exchange over HTTP with Alice Blue's Ant-A3 routes (lab.alice_sim), and its order feed on a
loopback WebSocket, until SIGTERM or Ctrl-C.

Prints the base URL to point `ALICE_API_ROOT` at (with its trailing `/`), then the order feed's URL.
Loopback addresses only. `--config` loads clients (user id, app code, api secret) and faults from a
JSON file (see `AliceSim.configure`); more can be added at run time through `POST /_sim/clients`
(which answers an auth code for the vendor login too), `POST /_sim/auth-code` and `POST /_sim/faults`.
A client entry's `user_session` is accepted as a live session (the demo's, see below).

`manage.py alice_sim --link-demo CHILD4 --write-config .alice-sim.json` serves nothing: it moves those
demo accounts to Alice Blue with a fresh simulator app code, api secret and session, and writes the
`--config` file (0600, it holds them) the serving command then loads (`make run BROKERS=mixed`).
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
from lab.alice_demo import DemoClientStore, alice_demo_config
from lab.alice_sim.server import AliceSim, RunningSim, start
from lab.kite_sim.faults import FaultSpecError
from lab.management.commands.angel_sim import write_private_json


def run_alice_sim(
    *, host: str, port: int, ws_port: int = 0, config: dict[str, Any] | None = None
) -> RunningSim:
    """Start the simulator (configured) in background threads; the caller stops it."""
    store = DemoClientStore()
    sim = AliceSim(store=store)
    if config:
        sim.configure(config)
        for entry in config.get("clients", []):
            if entry.get("user_session"):
                store.adopt(user_id=str(entry["user_id"]), user_session=str(entry["user_session"]))
    return start(sim=sim, host=host, port=port, ws_port=ws_port)


class Command(BaseCommand):
    help = "Serve the paper exchange with Alice Blue (Ant-A3) routes and order feed on 127.0.0.1."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, help="TCP port (0 picks a free one); required to serve.")
        parser.add_argument("--ws-port", type=int, default=0, help="The order feed's port (0: any free one).")
        parser.add_argument(
            "--host", default="127.0.0.1", help="Loopback address to bind (default 127.0.0.1)."
        )
        parser.add_argument("--config", type=Path, help="JSON file with clients and faults to load.")
        parser.add_argument(
            "--link-demo", metavar="USER_IDS", help="Demo accounts to move to Alice Blue; serves nothing."
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

    def _link_demo(self, user_ids: str, path: Path | None) -> None:
        if path is None:
            raise CommandError("--link-demo needs --write-config PATH")
        wanted = [u.strip() for u in user_ids.split(",") if u.strip()]
        if not wanted:
            raise CommandError("--link-demo: no user ids")
        try:
            config = alice_demo_config(user_ids=wanted)
        except (Account.DoesNotExist, AccountError) as exc:
            raise CommandError(f"cannot move {', '.join(wanted)} to Alice Blue: {exc}") from None
        write_private_json(path, config)
        self.stdout.write(
            f"moved {', '.join(c['user_id'] for c in config['clients'])} to Alice Blue; wrote {path}"
        )
