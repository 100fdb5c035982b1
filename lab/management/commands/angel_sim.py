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

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.angel_demo import angel_demo_config
from lab.angel_sim.server import AngelSim, RunningSim, start
from lab.sim_command import START_ERRORS, check_ports, link_demo, read_config, serve_until_signalled


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
            paper = [u.strip() for u in options["paper_demo"].split(",") if u.strip()]
            link_demo(
                self,
                user_ids=options["link_demo"],
                path=options["write_config"],
                broker="Angel One",
                account_field="client_code",
                make_config=lambda wanted: angel_demo_config(user_ids=wanted, paper_user_ids=paper),
            )
            return
        if options["port"] is None:
            raise CommandError("--port is required to serve")
        config = read_config(options["config"])
        check_ports(options, ("port",))
        try:
            running = run_angel_sim(host=options["host"], port=options["port"], config=config)
        except START_ERRORS as exc:
            raise CommandError(f"cannot start the Angel simulator: {exc}") from None
        serve_until_signalled(self, running, lines=[running.root], label="Angel")
