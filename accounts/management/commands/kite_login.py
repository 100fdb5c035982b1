"""Kite's daily login without the web app (headless setups)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.kite.services import account_kite_complete_login, account_kite_login_url
from accounts.models import Account
from accounts.validation import AccountError

HELP = """Print the Kite login URL of a linked Kite account; exchange the request token Kite returns.

1. Open the printed URL in a browser and log in as the account's Zerodha user.
2. Kite redirects to the app's registered redirect URL with `request_token=...` in the address.
3. Run again with --request-token TOKEN (the token, or the whole redirect address), or paste it
   when asked (interactive terminal). The access token is stored encrypted until the next 06:00 IST.
No secret is ever printed.
"""


class Command(BaseCommand):
    help = HELP

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account_id", type=int, help="The linked Kite account's id.")
        parser.add_argument(
            "--request-token",
            help="The request_token from Kite's redirect (or the redirect address itself); '-' reads stdin.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(pk=options["account_id"]).first()
        if account is None:
            raise CommandError(f"account {options['account_id']} does not exist")
        token = options["request_token"]
        try:
            if token is None:
                self.stdout.write(f"Log in as {account.broker_user_id} at:")
                self.stdout.write(account_kite_login_url(account=account))
                if not sys.stdin.isatty():
                    self.stdout.write(f"then run: manage.py kite_login {account.pk} --request-token TOKEN")
                    return
                self.stdout.write("Paste the request_token (or the redirect address), then Enter:")
                token = sys.stdin.readline()
                if not token.strip():
                    raise CommandError("no request token given; nothing changed")
            elif token == "-":  # noqa: S105  ("-" means stdin, not a password)
                token = sys.stdin.readline()
            account = account_kite_complete_login(
                account=account, request_token=token, actor="cli:kite_login"
            )
        except AccountError as exc:
            raise CommandError(" ".join(exc.message.split())) from None
        expires = account.token_expires_at.isoformat() if account.token_expires_at else "unknown"
        self.stdout.write(
            f"account {account.pk} ({account.broker_user_id}) logged in; session valid until {expires} "
            f"(status: {account.status})"
        )
