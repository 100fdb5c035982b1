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

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.dhan_demo import dhan_demo_config
from lab.dhan_sim.server import DhanSim, RunningSim, start
from lab.sim_command import START_ERRORS, check_ports, link_demo, read_config, serve_until_signalled


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
            link_demo(
                self,
                user_ids=options["link_demo"],
                path=options["write_config"],
                broker="Dhan",
                account_field="client_id",
                make_config=lambda wanted: dhan_demo_config(user_ids=wanted),
            )
            return
        if options["port"] is None:
            raise CommandError("--port is required to serve")
        check_ports(options, ("port", "ws_port"))
        config = read_config(options["config"])
        try:
            running = run_dhan_sim(
                host=options["host"], port=options["port"], ws_port=options["ws_port"], config=config
            )
        except START_ERRORS as exc:
            raise CommandError(f"cannot start the Dhan simulator: {exc}") from None
        serve_until_signalled(self, running, lines=[running.root, running.ws_root], label="Dhan")
