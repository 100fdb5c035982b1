"""`manage.py demo_reset`: the demo desk of `make run` back to the README's starting balances.

The demo accounts (MASTER1, CHILD1-5 of `seed_demo`) get their paper cash back, lose their paper
orders and positions and the engine's rows (lab.demo.demo_desk_reset), and their capital settings
are seeded again, so that the README's worked example reproduces on the next `make run`. Refused
while the engine runs. `make demo-reset` runs it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.management.commands.seed_demo import DEMO_ACCOUNTS, seed_demo
from accounts.models import Account, Broker, Ownership
from brokers.management.commands.paper import inr, render_table
from lab.demo import DemoResetRefused, demo_desk_reset


class Command(BaseCommand):
    help = (
        "Put the demo desk (MASTER1, CHILD1-5) back to the README's starting balances: paper cash, "
        "no paper orders or positions, no engine rows of theirs. Stop `make run` first."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        cash = {spec.user_id: spec.cash for spec in DEMO_ACCOUNTS}
        try:
            result = demo_desk_reset(cash=cash)
        except DemoResetRefused as exc:
            raise CommandError(f"demo not reset: {exc}") from None
        master = (
            Account.objects.filter(broker_user_id=DEMO_ACCOUNTS[0].user_id)
            .exclude(ownership=Ownership.PENDING)
            .first()
        )
        broker = master.broker if master is not None else Broker.PAPER
        if broker in (Broker.PAPER, Broker.KITE):  # the brokers seed_demo puts the desk on
            seed_demo(broker=broker)
        deleted = ", ".join(f"{number} {kind}" for kind, number in result.deleted.items()) or "nothing"
        self.stdout.write(f"Demo desk reset: deleted {deleted}.")
        if broker not in (Broker.PAPER, Broker.KITE):
            self.stdout.write(f"The demo master is on {broker}: the accounts' settings are left as they are.")
        if result.resumed:
            self.stdout.write(f"Resumed: {', '.join(result.resumed)}.")
        rows = [(user_id, inr(amount)) for user_id, amount in result.cash.items()]
        self.stdout.write(render_table(("user id", "paper cash"), rows, right={1}))
        self.stdout.write("Start again with `make run`; the README's worked example reproduces.")
