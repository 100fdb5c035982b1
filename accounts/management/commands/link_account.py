"""Link (or update) a broker account from the command line."""

from __future__ import annotations

import re
import sys
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import MARKET_AFTER_SECONDS_MAX, Account, Broker, CapitalMode, PendingPolicy
from accounts.services import (
    AccountError,
    account_link,
    account_set_credentials,
    account_settings_validate,
    account_update_settings,
)
from accounts.services._common import lock, save_changes, state
from brokers.angel.session import AngelSession, valid_totp_secret
from brokers.errors import BrokerError
from brokers.registry import BrokerCredentials, build_client
from replication.services.audit_log import EventKind, audit

ANGEL_LOGIN_FIELDS = ("pin", "totp_secret")
PIN_RE = re.compile(r"[0-9]{4,8}")

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
            for name in ("api_key", "api_secret", "access_token", *ANGEL_LOGIN_FIELDS)
        }
        angel_login = {name: credentials.pop(name) for name in ANGEL_LOGIN_FIELDS}
        session = self._angel_check(options, credentials, angel_login)
        # Settings account_link does not take; applied in the same transaction, audited separately.
        settings = {
            name: options[name]
            for name in ("pending_policy", "market_after_seconds")
            if options[name] is not None
        }
        try:
            account_settings_validate(account=None, **settings)
            with transaction.atomic():
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
                )
                if settings:
                    account = account_update_settings(account=account, actor="cli", **settings)
                if any(value is not None for value in angel_login.values()):
                    account = angel_login_store(account=account, **angel_login)
                if session is not None:
                    account = account_set_credentials(
                        account=account,
                        actor="cli",
                        access_token=session.jwt_token,
                        expires_at=session.expires_at,
                    )
        except AccountError as exc:
            raise CommandError(" ".join(exc.message.split())) from exc
        outcome = "created" if created else "updated"
        self.stdout.write(f"account_id={account.pk} {outcome}")
        verb = "linked" if created else "updated"
        where = f"{account.broker}:{account.broker_user_id}"
        self.stdout.write(f"{verb} account {account.pk} ({where}, {account.role})")
        if account.broker == Broker.KITE and not account.access_token:
            self.stdout.write("next: log in to Kite to store an access token (kite_login)")
        if session is not None:
            self.stdout.write(
                f"logged in to Angel One: session until {session.expires_at:%Y-%m-%d %H:%M} UTC"
            )
        elif account.broker == Broker.ANGEL and not (account.pin and account.totp_secret):
            self.stdout.write(
                "next: store the PIN and TOTP secret (--pin - --totp-secret -) for the daily login"
            )

    def _angel_check(
        self, options: dict[str, Any], credentials: dict[str, str | None], login: dict[str, str | None]
    ) -> AngelSession | None:
        """For Angel with an api key, PIN and TOTP secret: one login at Angel (outside any
        transaction), so a wrong PIN or secret is refused before anything is stored."""
        given = [name for name, value in login.items() if value is not None]
        if options["broker"] != Broker.ANGEL:
            if given:
                raise CommandError(f"--{given[0].replace('_', '-')} is for Angel One accounts only")
            return None
        pin = login["pin"]
        if pin is not None and not PIN_RE.fullmatch(pin.strip()):
            raise CommandError("--pin: Angel One's PIN is 4 to 8 digits")
        totp = login["totp_secret"]
        if totp is not None and not valid_totp_secret(totp):
            raise CommandError("--totp-secret: not a base32 secret (letters A-Z and digits 2-7)")
        if not (credentials["api_key"] and login["pin"] and totp):
            return None
        creds = BrokerCredentials(
            broker=Broker.ANGEL,
            user_id=options["user_id"].strip().upper(),
            api_key=credentials["api_key"],
            pin=login["pin"],
            totp_secret=totp,
        )
        client = build_client(creds)
        try:
            session = client.login()  # type: ignore[attr-defined]  # AngelBroker's, not the protocol's
        except BrokerError as exc:
            raise CommandError(f"Angel One refused the login, nothing stored: {exc.message}") from None
        return cast(AngelSession, session)

    def _credential(self, value: str | None) -> str | None:
        if value != "-":
            return value
        line = sys.stdin.readline()
        if not line:
            raise CommandError("expected a credential on standard input, got end of input")
        return line.strip()


def angel_login_store(*, account: Account, pin: str | None, totp_secret: str | None) -> Account:
    """Store the PIN and TOTP secret (encrypted), audited by field name only.

    Belongs in accounts.services.account_set_credentials (which does not take them yet): kept
    here, on the same lock, diff and audit row kind, until it does.
    """
    locked = lock(account)
    before = state(locked)
    if pin is not None:
        setattr(locked, "pin", pin.strip())  # noqa: B010 - encrypted fields are untyped in the stubs
    if totp_secret is not None:
        setattr(locked, "totp_secret", totp_secret.replace(" ", "").upper())  # noqa: B010
    delta = save_changes(locked, before)
    if delta:
        audit(
            kind=EventKind.ACCOUNT_CREDENTIALS_CHANGED,
            message=f"credentials changed: {', '.join(n for n in ANGEL_LOGIN_FIELDS if n in delta)}",
            actor="cli",
            data=delta,
            account=locked,
        )
    locked.refresh_from_db()
    return locked
