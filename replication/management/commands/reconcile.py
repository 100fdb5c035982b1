"""`manage.py reconcile`: entitled vs replicated vs actual (broker) positions for every child."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Account
from replication.reconciliation import Grade, reconcile, reconciliation_sweep


class Command(BaseCommand):
    help = (
        "Compare what each child is entitled to hold (DESIGN §3.7), what the engine's filled orders "
        "put there (replicated) and what its broker reports. Grades: ok; minor (less than a lot, "
        "extra the client bought, an exit working, or an entry that did not fill); major (holding "
        "above its entitlement with no exit working, e.g. after the master exited, or the broker "
        "short of the engine's orders); unknown (broker unreadable). With --record, drifts are "
        "written to the audit log. Exits 1 when any drift is major or unknown."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--record", action="store_true", help="write an audit row per drift")

    def handle(self, *args: Any, **options: Any) -> None:
        drifts = reconciliation_sweep(actor="cli") if options["record"] else reconcile()
        names = dict(Account.objects.values_list("pk", "broker_user_id"))
        self.stdout.write(
            f"{'child':<12}{'instrument':<28}{'product':>8}{'entitled':>10}{'replicated':>11}"
            f"{'actual':>10}  grade"
        )
        for d in drifts:
            actual = "?" if d.actual is None else str(d.actual)
            self.stdout.write(
                f"{names.get(d.child_id, d.child_id)!s:<12}{d.exchange + ':' + d.tradingsymbol:<28}"
                f"{d.product:>8}{d.entitled!s:>10}{d.expected:>11}{actual:>10}  {d.grade}"
            )
        major = sum(1 for d in drifts if d.grade in (Grade.MAJOR, Grade.UNKNOWN))
        self.stdout.write(f"{len(drifts)} positions checked, {major} major or unreadable")
        if major:
            raise SystemExit(1)
