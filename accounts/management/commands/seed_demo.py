"""`manage.py seed_demo`: a staff login and a paper master with four paper children (DESIGN §3.6).

Idempotent: a second run creates nothing and never prints a password again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Account, Broker, CapitalMode
from accounts.services import account_link
from brokers.management.commands.paper import inr, render_table
from brokers.paper.services import paper_account_open

STAFF_USERNAME = "staff"
ACTOR = "seed_demo"


@dataclass(frozen=True)
class DemoAccount:
    user_id: str
    name: str
    cash: Decimal
    master: bool = False
    capital_mode: CapitalMode = CapitalMode.TOTAL
    fixed_capital: Decimal | None = None
    multiplier: Decimal = Decimal("1")


# The master and children C1-C4 of the worked example in DESIGN §3.6.
DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("MASTER1", "Master (paper)", Decimal("1000000.00"), master=True),
    DemoAccount("CHILD1", "C1 total 5,00,000", Decimal("500000.00")),
    DemoAccount("CHILD2", "C2 total 20,00,000", Decimal("2000000.00")),
    DemoAccount("CHILD3", "C3 total 2,50,000", Decimal("250000.00")),
    DemoAccount(
        "CHILD4",
        "C4 fixed 10,00,000 x0.5",
        Decimal("1500000.00"),
        capital_mode=CapitalMode.FIXED,
        fixed_capital=Decimal("1000000.00"),
        multiplier=Decimal("0.5"),
    ),
)


@dataclass(frozen=True)
class SeededAccount:
    account: Account
    paper_cash: Decimal
    created: bool


@dataclass(frozen=True)
class SeedResult:
    staff_password: str | None  # set only when this run created the staff user
    accounts: tuple[SeededAccount, ...]


@transaction.atomic  # all or nothing: a staff user whose password was never shown is never kept
def seed_demo() -> SeedResult:
    """Create the staff superuser and the paper demo accounts unless they exist."""
    user_model = get_user_model()
    password: str | None = None
    if not user_model.objects.filter(username=STAFF_USERNAME).exists():
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=STAFF_USERNAME, email="", password=password)

    seeded = []
    for spec in DEMO_ACCOUNTS:
        paper = paper_account_open(user_id=spec.user_id, cash=spec.cash)  # keeps an existing balance
        account, created = account_link(
            broker=Broker.PAPER,
            user_id=spec.user_id,
            name=spec.name,
            master=spec.master,
            capital_mode=spec.capital_mode,
            fixed_capital=spec.fixed_capital,
            multiplier=spec.multiplier,
            consent=True,
            actor=ACTOR,
        )
        seeded.append(SeededAccount(account=account, paper_cash=paper.cash, created=created))
    return SeedResult(staff_password=password, accounts=tuple(seeded))


class Command(BaseCommand):
    help = "Seed a staff login and the paper master and children of the worked example (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        result = seed_demo()
        if result.staff_password is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Staff login (shown once): {STAFF_USERNAME} / {result.staff_password}  "
                    "at http://127.0.0.1:8000/admin/"
                )
            )
        else:
            self.stdout.write(
                f"{STAFF_USERNAME} user exists; reset with manage.py changepassword {STAFF_USERNAME}"
            )
        headers = ("user id", "role", "capital mode", "fixed capital", "multiplier", "paper cash", "seeded")
        rows = [
            (
                row.account.broker_user_id,
                row.account.role,
                row.account.capital_mode,
                "-" if row.account.fixed_capital is None else inr(row.account.fixed_capital),
                row.account.multiplier.normalize(),
                inr(row.paper_cash),
                "created" if row.created else "exists",
            )
            for row in result.accounts
        ]
        self.stdout.write(render_table(headers, rows, right={3, 4, 5}))
