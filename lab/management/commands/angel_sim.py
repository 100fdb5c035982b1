"""`manage.py angel_sim --port P [--host 127.0.0.1] [--config sim.json]`: serve the paper exchange
over HTTP with Angel One SmartAPI's routes (lab.angel_sim), until SIGTERM or Ctrl-C.

Prints the root URL to point `ANGEL_API_ROOT` at. Loopback addresses only. `--config` loads
clients (client code, PIN, TOTP secret, api key) and faults from a JSON file (see
`AngelSim.configure`); more can be added at run time through `POST /_sim/clients` and
`POST /_sim/faults`.

`manage.py angel_sim --link-demo CHILD1,CHILD2 [--paper-demo CHILD3] --write-config .angel-sim.json`
serves nothing: it moves those demo accounts to Angel One (and to paper) with fresh simulator
credentials and writes the `--config` file (0600, it holds their PINs and TOTP secrets) the serving
command then loads (`make run BROKERS=mixed`).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Account
from accounts.validation import AccountError
from lab.angel_demo import angel_demo_config
from lab.angel_sim.server import AngelSim, RunningSim, start
from lab.kite_sim.faults import FaultSpecError


def run_angel_sim(*, host: str, port: int, config: dict[str, Any] | None = None) -> RunningSim:
    """Start the simulator (configured) in a background thread; the caller stops it."""
    sim = AngelSim()
    if config:
        sim.configure(config)
    return start(sim=sim, host=host, port=port)


class Command(BaseCommand):
    help = "Serve the paper exchange with Angel One SmartAPI routes (an Angel simulator) on 127.0.0.1."
    requires_system_checks: list[str] = []  # no URLconf, templates or admin: as kite_sim

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, help="TCP port (0 picks a free one); required to serve.")
        parser.add_argument(
            "--link-demo",
            metavar="USER_IDS",
            help="Comma-separated demo accounts to move to Angel One (with --write-config); serves nothing.",
        )
        parser.add_argument("--write-config", type=Path, help="Where --link-demo writes the --config file.")
        parser.add_argument(
            "--paper-demo",
            metavar="USER_IDS",
            default="",
            help="With --link-demo: demo accounts to move to paper.",
        )
        parser.add_argument(
            "--host", default="127.0.0.1", help="Loopback address to bind (default 127.0.0.1)."
        )
        parser.add_argument("--config", type=Path, help="JSON file with clients and faults to load.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["link_demo"] is not None:
            self._link_demo(options["link_demo"], options["write_config"], options["paper_demo"])
            return
        if options["port"] is None:
            raise CommandError("--port is required to serve")
        config = None
        if options["config"] is not None:
            try:
                config = json.loads(options["config"].read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {options['config']}: {exc}") from None
        if not 0 <= options["port"] <= 65535:
            raise CommandError(f"--port must be between 0 and 65535, got {options['port']}")
        try:
            running = run_angel_sim(host=options["host"], port=options["port"], config=config)
        except (ValueError, KeyError, TypeError, FaultSpecError, OSError) as exc:
            raise CommandError(f"cannot start the Angel simulator: {exc}") from None
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(running.root)
        self.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            running.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Angel simulator stopped.")

    def _link_demo(self, user_ids: str, path: Path | None, paper_ids: str) -> None:
        if path is None:
            raise CommandError("--link-demo needs --write-config PATH")
        wanted = [u.strip() for u in user_ids.split(",") if u.strip()]
        if not wanted:
            raise CommandError("--link-demo: no user ids")

        try:
            paper = [u.strip() for u in paper_ids.split(",") if u.strip()]
            config = angel_demo_config(user_ids=wanted, paper_user_ids=paper)
        except (Account.DoesNotExist, AccountError) as exc:
            raise CommandError(f"cannot move {', '.join(wanted)} to Angel One: {exc}") from None
        write_private_json(path, config)
        self.stdout.write(
            f"moved {', '.join(c['client_code'] for c in config['clients'])} to Angel One; wrote {path}"
        )


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically with `data` as JSON, readable by its owner only (0600)."""
    fd, temporary = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
