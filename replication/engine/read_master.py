"""Stage: read the master (its funds and order book) and keep a snapshot of its margins."""

from __future__ import annotations

from datetime import timedelta

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Role
from brokers.errors import BrokerError
from replication.engine.calculator import read_together
from replication.engine.context import TickContext
from replication.engine.types import MasterRead
from replication.models import MarginSnapshot
from replication.services.audit_log import EventKind, audit
from replication.services.snapshots import snapshot_record

SNAPSHOT_EVERY = timedelta(seconds=60)


def read_master(ctx: TickContext) -> MasterRead | None:
    """The enabled master's funds and book, or None (nothing is decided this tick, and why)."""
    master = Account.objects.filter(role=Role.MASTER).exclude(status=AccountStatus.DISABLED).first()
    if master is None:
        ctx.error("no enabled master account")
        return None
    try:
        client = ctx.clients.get(master)
        # Funds and book in one round trip (concurrently in the pool, inline without workers).
        answers = read_together(ctx.pool, {"funds": client.funds, "book": client.orders})
        failed = [answer for answer in answers.values() if isinstance(answer, BrokerError)]
        if failed:
            raise failed[0]
    except (BrokerError, CredentialDecryptError) as exc:
        ctx.error(f"master read failed, nothing decided this tick: {exc}")
        audit(kind=EventKind.MASTER_READ_FAILED, account=master, message=str(exc)[:500])
        return None
    return MasterRead(
        master=master,
        client=client,
        funds=answers["funds"],
        book=answers["book"],
        prev=_latest_snapshot(master),
    )


def snapshot_margins(ctx: TickContext, read: MasterRead) -> None:
    """Store the master's margins when they moved, or a minute after the last snapshot."""
    prev, funds = read.prev, read.funds
    if (
        prev is None
        or prev.used_margin != funds.used
        or prev.available_margin != funds.available
        or ctx.now() - prev.taken_at >= SNAPSHOT_EVERY
    ):
        snapshot_record(
            account=read.master,
            used_margin=funds.used,
            available_margin=funds.available,
            capital=funds.capital,
            tick=ctx.tick,
        )


def _latest_snapshot(master: Account) -> MarginSnapshot | None:
    return MarginSnapshot.objects.filter(account=master).order_by("-taken_at", "-id").first()
