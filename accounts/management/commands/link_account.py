"""Link (or update) a broker account from the command line."""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import MARKET_AFTER_SECONDS_MAX, Broker, CapitalMode, PendingPolicy
from accounts.services import (
    AccountError,
    account_link,
    account_settings_validate,
    account_update_settings,
)

HELP = """Link a broker account, or update it when (broker, user id) is already linked.

The first output line is machine-readable: `account_id=<id> created` or `account_id=<id> updated`;
a human-readable line follows. Credentials are never printed. Pass `-` as the value of --api-key,
--api-secret or --access-token to read it from standard input (one line each, in that order), which
keeps it out of the shell history. Bad input exits with a one-line error and changes nothing.

Angel One (`--broker angel`): --user-id is the client code, --api-key the SmartAPI key, and --pin
and --totp-secret (each may be `-`, read after the others) the client's PIN and TOTP secret, stored
encrypted so the server logs in by itself every day. With all three the command logs in once at
Angel before it stores anything (a refusal changes nothing) and keeps that day's session.
"""


def _decimal(option: str, text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise CommandError(f"{option}: {text[:40]!r} is not a number")
    return number


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--broker", required=True, choices=Broker.values)
        parser.add_argument("--user-id", required=True, help="Broker client id (letters, digits, _ or -).")
        parser.add_argument("--name", help="Display name.")
        parser.add_argument("--api-key", help="Kite API key ('-' reads it from stdin).")
        parser.add_argument("--api-secret", help="Kite API secret ('-' reads it from stdin).")
        parser.add_argument("--access-token", help="Kite access token ('-' reads it from stdin).")
        parser.add_argument("--pin", help="Angel One PIN ('-' reads it from stdin).")
        parser.add_argument("--totp-secret", help="Angel One TOTP secret, base32 ('-' reads it from stdin).")
        parser.add_argument(
            "--master",
            action="store_true",
            help="Make it the master (refused while another master is enabled: promote instead).",
        )
        parser.add_argument("--capital-mode", choices=[mode.value for mode in CapitalMode])
        parser.add_argument("--fixed-capital", metavar="AMOUNT", help="Rupees; needs --capital-mode fixed.")
        parser.add_argument("--multiplier", metavar="X", help="Above 0, at most 100 (default 1).")
        parser.add_argument(
            "--pending-policy",
            choices=PendingPolicy.values,
            help="A child order still open after the master's order filled: leave it (default), or "
            "convert it to MARKET after --market-after-seconds.",
        )
        parser.add_argument(
            "--market-after-seconds",
            metavar="SECONDS",
            help=f"Whole seconds, 0 to {MARKET_AFTER_SECONDS_MAX} (default 60).",
        )
        parser.add_argument("--consent", action="store_true", help="Record the client's consent now.")

    def handle(self, *args: Any, **options: Any) -> None:
        fixed_capital = _decimal("--fixed-capital", options["fixed_capital"])
        multiplier = _decimal("--multiplier", options["multiplier"])
        credentials = {
            name: self._credential(options[name])
            for name in ("api_key", "api_secret", "access_token", "pin", "totp_secret")
        }
        # Settings account_link does not take; checked first, applied right after the link (which
        # may log in at the broker, so it runs outside any transaction), audited separately.
        settings = {
            name: options[name]
            for name in ("pending_policy", "market_after_seconds")
            if options[name] is not None
        }
        started = timezone.now()
        try:
            account_settings_validate(account=None, **settings)
            account, created = account_link(
                broker=options["broker"],
                user_id=options["user_id"],
                name=options["name"],
                master=options["master"],
                capital_mode=options["capital_mode"],
                fixed_capital=fixed_capital,
                multiplier=multiplier,
                consent=options["consent"],
                actor="cli",
                api_key=credentials["api_key"],
                api_secret=credentials["api_secret"],
                access_token=credentials["access_token"],
                pin=credentials["pin"],
                totp_secret=credentials["totp_secret"],
            )
            if settings:
                account = account_update_settings(account=account, actor="cli", **settings)
        except AccountError as exc:
            raise CommandError(" ".join(exc.message.split())) from exc
        outcome = "created" if created else "updated"
        self.stdout.write(f"account_id={account.pk} {outcome}")
        verb = "linked" if created else "updated"
        where = f"{account.broker}:{account.broker_user_id}"
        self.stdout.write(f"{verb} account {account.pk} ({where}, {account.role})")
        if account.broker == Broker.KITE and not account.access_token:
            self.stdout.write("next: log in to Kite to store an access token (kite_login)")
        logged_in = credentials["access_token"] is None and (
            account.token_obtained_at is not None and account.token_obtained_at >= started
        )
        if logged_in and account.token_expires_at is not None:
            self.stdout.write(
                f"logged in to {account.get_broker_display()}: session until "
                f"{account.token_expires_at:%Y-%m-%d %H:%M} UTC"
            )
        if account.broker == Broker.DHAN and not (account.pin and account.totp_secret):
            self.stdout.write(
                "next: the access token lives 24 hours; store the PIN and TOTP secret "
                "(--pin - --totp-secret -) for the server's own login, or link a new token every day"
            )
        if account.broker == Broker.ANGEL and not (account.pin and account.totp_secret):
            self.stdout.write(
                "next: store the PIN and TOTP secret (--pin - --totp-secret -) for the daily login"
            )

    def _credential(self, value: str | None) -> str | None:
        if value != "-":
            return value
        line = sys.stdin.readline()
        if not line:
            raise CommandError("expected a credential on standard input, got end of input")
        return line.strip()
