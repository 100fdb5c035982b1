"""`manage.py master_positions`: the master's positions and P&L, read-only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.crypto import CredentialDecryptError
from accounts.selectors import account_get_master
from brokers.errors import BrokerError
from replication.clients import ClientCache
from replication.sizing import rupees


class Command(BaseCommand):
    help = "Show the master account's positions and P&L as its broker reports them (reads only)."

    def handle(self, *args: Any, **options: Any) -> None:
        master = account_get_master()
        if master is None:
            raise CommandError("no enabled master account; link one with `manage.py link_account --master`")
        try:
            client = ClientCache().get(master)
            positions = client.positions()
            funds = client.funds()
        except (BrokerError, CredentialDecryptError) as exc:
            raise CommandError(f"cannot read the master's broker: {exc}") from exc
        self.stdout.write(
            f"master {master.display_name or master.broker_user_id} ({master.broker}:{master.broker_user_id})"
        )
        self.stdout.write(
            f"used {rupees(funds.used)}  available {rupees(funds.available)}  capital {rupees(funds.capital)}"
        )
        header = f"{'instrument':<28}{'product':>8}{'qty':>8}{'avg':>12}{'ltp':>12}{'P&L':>16}"
        self.stdout.write(header)
        total = Decimal("0")
        for p in sorted(positions, key=lambda p: (p.exchange, p.tradingsymbol)):
            total += p.pnl
            self.stdout.write(
                f"{p.exchange + ':' + p.tradingsymbol:<28}{p.product.value:>8}{p.quantity:>8}"
                f"{p.average_price:>12.2f}{p.last_price:>12.2f}{rupees(p.pnl):>16}"
            )
        if not positions:
            self.stdout.write("(no positions)")
        self.stdout.write(f"{'total P&L':<68}{rupees(total):>16}")
