"""`manage.py seed_demo [--kite-sim CONFIG]`: a staff login and the master and four children of the
worked example (DESIGN §3.6), on the paper exchange or on the Kite path against the simulator.

Idempotent: a second run creates nothing and never prints a password again. Each run puts the demo
accounts on the broker it asks for: with `--kite-sim` they become Kite accounts (same user ids, the
simulator maps their tokens to the paper accounts of those ids) and CONFIG gets the simulator's apps
and sessions for `manage.py kite_sim --config`; without it they are paper accounts again. The demo
user ids are the demo's: a real Kite account must not be linked under them. Secrets never reach
the output.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Account, AccountStatus, Broker, CapitalMode, Ownership
from accounts.services import account_link, account_set_credentials, account_switch_broker
from brokers.management.commands.paper import inr, render_table
from brokers.paper.models import PaperOrder
from brokers.paper.services import paper_account_open
from brokers.simcreds import API_KEY_CHARS, is_simulator_credential, new_simulator_credential

STAFF_USERNAME = "staff"
# A demo client (not staff) who owns one child, so the client portal has someone to show.
CLIENT_USERNAME = "client"
CLIENT_OWNS = "CHILD2"
ACTOR = "seed_demo"
# Where the simulator's login page sends the browser back to (the web process of `make run`).
KITE_SIM_REDIRECT_URL = "http://127.0.0.1:8000/accounts/kite/callback/"
# Where `make run`'s web process answers; the staff pages are under /staff/.
DEFAULT_SITE = "http://127.0.0.1:8000"
# A stored token this close to its expiry is replaced, so a fresh `make run` starts with live sessions.
TOKEN_RENEW_MARGIN = timedelta(minutes=10)
SWITCH_REASON = "demo account moved between the paper exchange and the Kite simulator (same paper book)"


@dataclass(frozen=True)
class DemoAccount:
    user_id: str
    name: str
    cash: Decimal
    master: bool = False
    capital_mode: CapitalMode = CapitalMode.TOTAL
    fixed_capital: Decimal | None = None
    multiplier: Decimal = Decimal("1")


# The master and children C1-C5 of the worked example in DESIGN §3.6.
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
    DemoAccount("CHILD5", "C5 total 7,00,000", Decimal("700000.00")),
)


@dataclass(frozen=True)
class SeededAccount:
    account: Account
    paper_cash: Decimal
    created: bool
    moved_from: str | None = None  # the broker the account was on before this run moved it


@dataclass(frozen=True)
class SeedResult:
    staff_password: str | None  # set only when this run created the staff user
    accounts: tuple[SeededAccount, ...]
    client_password: str | None = None  # set only when this run created the demo client user


def _new_credentials() -> dict[str, str]:
    """Random Kite-shaped credentials for the simulator (16-char key, 32-char secret and token);
    the key and token carry the simulator's mark, so the Kite adapter never sends them to any
    host but the simulator on this machine, whatever KITE_API_ROOT a later command runs with."""
    return {
        "api_key": new_simulator_credential(API_KEY_CHARS),
        "api_secret": secrets.token_hex(16),
        "access_token": new_simulator_credential(),
    }


def _missing_credentials(account: Account) -> dict[str, str]:
    """The credentials a simulator-served Kite account still needs: all of them if unreadable,
    absent or not the simulator's (an unmarked key), else a new access token when the stored one is
    gone, (nearly) expired, refused or unmarked."""
    fresh = _new_credentials()
    if not account.credentials_readable or not (account.api_key and account.api_secret):
        return fresh
    if not is_simulator_credential(account.secret("api_key")):
        return fresh
    expires = account.token_expires_at
    stale = expires is None or expires <= timezone.now() + TOKEN_RENEW_MARGIN
    unmarked = not is_simulator_credential(account.secret("access_token"))
    if not account.access_token or stale or unmarked or account.status == AccountStatus.NEEDS_LOGIN:
        return {"access_token": fresh["access_token"]}
    return {}


def _settled(*, broker: str, user_id: str) -> QuerySet[Account]:
    """The proven or vouched-for accounts of `broker:user_id` (pending claims left aside)."""
    return Account.objects.filter(broker=broker, broker_user_id=user_id).exclude(ownership=Ownership.PENDING)


def _place_on(spec: DemoAccount, broker: str) -> str | None:
    """Move the demo account `spec` onto `broker` if it is linked on the other one; returns that one.

    A client's pending claim of the id (on either broker) is not the demo account: it is ignored
    here, and dropped when the demo account settles on `broker`."""
    if _settled(broker=broker, user_id=spec.user_id).exists():
        return None
    other = (
        Account.objects.filter(broker_user_id=spec.user_id)
        .exclude(broker=broker)
        .exclude(ownership=Ownership.PENDING)
        .order_by("pk")
        .first()
    )
    if other is None:
        return None
    previous = other.broker
    account_switch_broker(account=other, broker=broker, actor=ACTOR, force=True, reason=SWITCH_REASON)
    return previous


@transaction.atomic  # all or nothing: a staff user whose password was never shown is never kept
def seed_demo(*, broker: str = Broker.PAPER) -> SeedResult:
    """Create the staff superuser unless it exists, and the demo accounts on `broker` (paper or
    kite, moving them there if they are on the other one). Kite accounts get random credentials
    (kept while their token is live) for the simulator."""
    if broker not in (Broker.PAPER, Broker.KITE):
        raise ValueError(f"unknown broker {broker!r}")
    user_model = get_user_model()
    password: str | None = None
    if not user_model.objects.filter(username=STAFF_USERNAME).exists():
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=STAFF_USERNAME, email="", password=password)
    client_password: str | None = None
    demo_client = user_model.objects.filter(username=CLIENT_USERNAME).first()
    if demo_client is None:
        client_password = secrets.token_urlsafe(12)
        demo_client = user_model.objects.create_user(username=CLIENT_USERNAME, password=client_password)

    seeded = []
    for spec in DEMO_ACCOUNTS:
        paper = paper_account_open(user_id=spec.user_id, cash=spec.cash)  # keeps an existing balance
        moved_from = _place_on(spec, broker)
        new = not _settled(broker=broker, user_id=spec.user_id).exists()
        creating_kite = new and broker == Broker.KITE
        first = _new_credentials() if creating_kite else {}
        account, created = account_link(
            broker=broker,
            user_id=spec.user_id,
            name=spec.name,
            master=spec.master,
            capital_mode=spec.capital_mode,
            fixed_capital=spec.fixed_capital,
            multiplier=spec.multiplier,
            consent=True,
            owner=demo_client if spec.user_id == CLIENT_OWNS else None,
            actor=ACTOR,
            api_key=first.get("api_key"),
            api_secret=first.get("api_secret"),
            access_token=first.get("access_token"),
        )
        if broker == Broker.KITE and not creating_kite:
            needed = _missing_credentials(account)
            if needed:
                account = account_set_credentials(
                    account=account,
                    actor=ACTOR,
                    api_key=needed.get("api_key"),
                    api_secret=needed.get("api_secret"),
                    access_token=needed.get("access_token"),
                )
        seeded.append(
            SeededAccount(account=account, paper_cash=paper.cash, created=created, moved_from=moved_from)
        )
    return SeedResult(staff_password=password, accounts=tuple(seeded), client_password=client_password)


def kite_sim_config(*, accounts: Iterable[Account]) -> dict[str, Any]:
    """`manage.py kite_sim --config` content serving `accounts` (Kite accounts on the simulator):
    one app per account (its key and secret, the local callback, the account's user id, so the
    simulator's login page signs straight in) and one session per stored access token."""
    apps: list[dict[str, str]] = []
    sessions: list[dict[str, str]] = []
    for account in accounts:
        if account.broker != Broker.KITE:
            raise ValueError(f"{account.broker_user_id} is not a Kite account")
        api_key = account.secret("api_key")
        apps.append(
            {
                "api_key": api_key,
                "api_secret": account.secret("api_secret"),
                "redirect_url": KITE_SIM_REDIRECT_URL,
                "user_id": account.broker_user_id,
            }
        )
        token = account.secret("access_token")
        if token:
            session = {"user_id": account.broker_user_id, "api_key": api_key, "access_token": token}
            if account.token_expires_at is not None:
                session["expires_at"] = account.token_expires_at.isoformat()
            sessions.append(session)
    return {"apps": apps, "sessions": sessions, "faults": []}


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically with `data` as JSON, readable by its owner only (0600)."""
    directory = path.resolve().parent
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Command(BaseCommand):
    help = (
        "Seed a staff login and the master and children of the worked example (idempotent); "
        "--kite-sim CONFIG puts them on the Kite path against the simulator."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--kite-sim",
            type=Path,
            metavar="CONFIG",
            help="make the demo accounts Kite accounts served by `manage.py kite_sim` and write its "
            "--config file here (mode 0600); without it they are paper accounts",
        )
        parser.add_argument(
            "--site",
            default=DEFAULT_SITE,
            help=f"where the web process answers, for the staff URL printed (default {DEFAULT_SITE})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config_path: Path | None = options["kite_sim"]
        if config_path is not None and not config_path.resolve().parent.is_dir():
            raise CommandError(f"cannot write {config_path}: no such directory")
        staff_url = options["site"].rstrip("/") + "/staff/"
        result = seed_demo(broker=Broker.KITE if config_path is not None else Broker.PAPER)
        if result.staff_password is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Staff login (shown once): {STAFF_USERNAME} / {result.staff_password}  at {staff_url}"
                )
            )
        else:
            self.stdout.write(
                f"{STAFF_USERNAME} user exists; reset with manage.py changepassword {STAFF_USERNAME}"
            )
        if result.client_password is not None:
            portal_url = options["site"].rstrip("/") + "/my/"
            self.stdout.write(
                self.style.SUCCESS(
                    f"Client login (shown once): {CLIENT_USERNAME} / {result.client_password}"
                    f"  at {portal_url}  (owns {CLIENT_OWNS})"
                )
            )
        headers = (
            "user id",
            "broker",
            "role",
            "capital mode",
            "fixed capital",
            "multiplier",
            "paper cash",
            "seeded",
        )
        rows = [
            (
                row.account.broker_user_id,
                row.account.broker,
                row.account.role,
                row.account.capital_mode,
                "-" if row.account.fixed_capital is None else inr(row.account.fixed_capital),
                row.account.multiplier.normalize(),
                inr(row.paper_cash),
                _seeded_label(row),
            )
            for row in result.accounts
        ]
        self.stdout.write(render_table(headers, rows, right={4, 5, 6}))
        traded = PaperOrder.objects.filter(
            account__user_id__in=[spec.user_id for spec in DEMO_ACCOUNTS]
        ).count()
        if traded:
            self.stdout.write(
                f"The demo desk has traded since it was seeded ({traded} paper orders); its balances are "
                "kept. `make demo-reset` (with make run stopped) restores the README's starting balances."
            )
        if config_path is not None:
            config = kite_sim_config(accounts=[row.account for row in result.accounts])
            try:
                write_private_json(config_path, config)
            except OSError as exc:
                raise CommandError(f"cannot write {config_path}: {exc.strerror}") from None
            self.stdout.write(
                f"Kite simulator config written to {config_path} (mode 0600): "
                f"{len(config['apps'])} apps, {len(config['sessions'])} sessions; credentials not shown."
            )


def _seeded_label(row: SeededAccount) -> str:
    if row.created:
        return "created"
    if row.moved_from is not None:
        return f"moved from {row.moved_from}"
    return "exists"
