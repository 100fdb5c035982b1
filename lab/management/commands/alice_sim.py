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

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.alice_demo import DemoClientStore, alice_demo_config
from lab.alice_sim.server import AliceSim, RunningSim, start
from lab.sim_command import START_ERRORS, check_ports, link_demo, read_config, serve_until_signalled


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
            link_demo(
                self,
                user_ids=options["link_demo"],
                path=options["write_config"],
                broker="Alice Blue",
                account_field="user_id",
                make_config=lambda wanted: alice_demo_config(user_ids=wanted),
            )
            return
        if options["port"] is None:
            raise CommandError("--port is required to serve")
        check_ports(options, ("port", "ws_port"))
        config = read_config(options["config"])
        try:
            running = run_alice_sim(
                host=options["host"], port=options["port"], ws_port=options["ws_port"], config=config
            )
        except START_ERRORS as exc:
            raise CommandError(f"cannot start the Alice Blue simulator: {exc}") from None
        serve_until_signalled(self, running, lines=[running.root, running.ws_root], label="Alice Blue")
