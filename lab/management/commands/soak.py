"""`manage.py soak`: the chaos soak (lab.soak) on a throwaway database; exits non-zero on a
duplicate, a lost order or any other broken invariant, and prints the command that replays the seed."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.scratch import throwaway_database
from lab.soak import SoakConfig, describe_tags, run_soak


class Command(BaseCommand):
    help = (
        "Chaos soak: a seeded session of random master events (entries, partial and full exits, "
        "hedges, LIMIT orders modified and cancelled, price moves) replicated on the Kite path "
        "against an in-process Kite simulator that injects random faults (latency, timeouts after "
        "accept, 5xx after accept, 429 bursts, a late order book, expired tokens). Then faults off, "
        "a quiet period, and the invariants: no tag placed twice, no wanted order lost. Runs on a "
        "throwaway database; the same seed replays the same events and faults."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seed", type=int, default=None, help="random seed (default: a new one, printed)"
        )
        parser.add_argument("--events", type=int, default=300, help="master events (default 300)")
        parser.add_argument("--children", type=int, default=10, help="child accounts (default 10)")
        parser.add_argument(
            "--fault-rate", type=float, default=0.3, help="chance of a new fault per event (default 0.3)"
        )
        parser.add_argument("--workers", type=int, default=8, help="fan-out pool size (default 8)")

    def handle(self, *args: Any, **options: Any) -> None:
        seed = options["seed"] if options["seed"] is not None else secrets.randbelow(1_000_000)
        if not 1 <= options["events"] <= 100_000:
            raise CommandError("--events must be between 1 and 100000")
        if not 1 <= options["children"] <= 2_000:
            raise CommandError("--children must be between 1 and 2000")
        if not 0 <= options["fault_rate"] <= 1:
            raise CommandError("--fault-rate must be between 0 and 1")
        if not 1 <= options["workers"] <= 256:
            raise CommandError("--workers must be between 1 and 256")
        config = SoakConfig(
            seed=seed,
            events=options["events"],
            children=options["children"],
            fault_rate=options["fault_rate"],
            workers=options["workers"],
        )
        self.stdout.write(
            f"soak: seed={seed} events={config.events} children={config.children} "
            f"fault_rate={config.fault_rate} (throwaway database)"
        )
        with throwaway_database("soak"):
            report = run_soak(config, progress=self.stdout.write)
            f = report.findings
            culprits = [t.split("(")[0] for t in (*f.duplicates, *f.lost)][:10]
            for line in describe_tags(culprits):  # read before the throwaway database goes
                self.stdout.write(line)
        for line in report.detail_lines():
            self.stdout.write(line)
        self.stdout.write(report.line())
        module = os.environ.get("DJANGO_SETTINGS_MODULE", "pms.settings")
        replay = config.replay_command(settings_module="" if module == "pms.settings" else module)
        self.stdout.write(f"replay: {replay}")
        if not report.ok:
            raise CommandError(
                f"soak seed {seed} broke an invariant: {'; '.join(report.findings.problems())}"
            )
