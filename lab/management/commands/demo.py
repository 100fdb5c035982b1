"""`manage.py demo`: the worked example of DESIGN §3.6, scripted on the paper exchange."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from lab.demo import build_desk, open_child_orders, run_script
from lab.scratch import throwaway_database
from replication.orchestrator import Orchestrator


class Command(BaseCommand):
    help = (
        "Run a scripted paper session on a throwaway database: master entry, a partial exit, a full "
        "exit, a two-leg hedge, a LIMIT order modified then cancelled. Prints a table per step "
        "(expected vs placed vs filled vs held per child) and exits non-zero if any child ends out "
        "of proportion. Your own database is not touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workers", type=int, default=8, help="fan-out pool size")

    def handle(self, *args: Any, **options: Any) -> None:
        failures = 0
        with throwaway_database("demo"):
            desk = build_desk()
            orchestrator = Orchestrator(holder="demo", workers=options["workers"])
            try:
                results = run_script(desk, orchestrator)
            finally:
                orchestrator.close()
            for number, r in enumerate(results, start=1):
                mark = "ok" if r.ok else "OUT OF PROPORTION"
                self.stdout.write(f"\n{number}. {r.step.title} — held in {r.step.symbol}: {mark}")
                self.stdout.write(f"   {'child':<6}{'placed':>10}{'filled':>10}{'held':>10}{'expected':>10}")
                for name, expected, placed, filled, held in r.rows:
                    self.stdout.write(f"   {name:<6}{placed:>10}{filled:>10}{held:>10}{expected:>10}")
                for error in r.errors:
                    self.stdout.write(f"   error: {error}")
                failures += 0 if r.ok else 1
            dangling = open_child_orders()
            if dangling:
                self.stdout.write(f"\n{dangling} child orders are still open after the cancellation")
                failures += 1
        if failures:
            raise CommandError(f"{failures} step(s) left a child out of proportion")
        self.stdout.write(self.style.SUCCESS("\nevery child stayed in proportion at every step"))
