"""Stage: read the master (its funds and order book) and keep a snapshot of its margins."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from accounts.crypto import CredentialDecryptError
from accounts.models import Account, AccountStatus, Role
from brokers.errors import BrokerError, BrokerUnavailable
from replication.engine.calculator import hinted_reads, read_together
from replication.engine.context import TickContext
from replication.engine.types import MasterRead
from replication.models import MarginSnapshot
from replication.services.audit_log import EventKind, audit
from replication.services.snapshots import snapshot_record

logger = logging.getLogger(__name__)

SNAPSHOT_EVERY = timedelta(seconds=60)
HINT = "hint:"  # the hinted calculator reads' names among the master reads


def read_master(ctx: TickContext) -> MasterRead | None:
    """The enabled master's funds and book, or None (nothing is decided this tick, and why)."""
    master = Account.objects.filter(role=Role.MASTER).exclude(status=AccountStatus.DISABLED).first()
    if master is None:
        ctx.error("no enabled master account")
        return None
    try:
        client = ctx.clients.get(master)
        # Funds and book in one round trip (concurrently in the pool, inline without workers),
        # with the calculator asked about the streamed orders that woke the tick, if any.
        hint = hinted_reads(ctx.hints, ctx.mode, master, client)
        reads = {"funds": client.funds, "book": client.orders}
        if hint is not None:
            reads |= {HINT + name: _guarded(fn) for name, fn in hint[1].items()}
        answers = read_together(ctx.pool, reads)
        failed = [answers[name] for name in ("funds", "book") if isinstance(answers[name], BrokerError)]
        if failed:
            raise failed[0]
    except (BrokerError, CredentialDecryptError) as exc:
        ctx.error(f"master read failed, nothing decided this tick: {exc}")
        audit(kind=EventKind.MASTER_READ_FAILED, account=master, message=str(exc)[:500])
        return None
    hinted = None
    if hint is not None:
        figures = {name[len(HINT) :]: value for name, value in answers.items() if name.startswith(HINT)}
        # A calculator read that failed is asked again once the book is known, as without a hint.
        if not any(isinstance(value, BrokerError) for value in figures.values()):
            hinted = (hint[0], figures)
    return MasterRead(
        master=master,
        client=client,
        funds=answers["funds"],
        book=answers["book"],
        prev=_latest_snapshot(master),
        hinted=hinted,
    )


def _guarded(read: Callable[[], Any]) -> Callable[[], Any]:
    """A hinted read that can only fail as a BrokerError: a guess never fails the tick."""

    def call() -> Any:
        try:
            return read()
        except BrokerError:
            raise
        except Exception as exc:  # noqa: BLE001  (logged; the read is made again if the book asks it)
            logger.warning("a read for a streamed order failed: %s: %s", type(exc).__name__, exc)
            return BrokerUnavailable(f"{type(exc).__name__}: {exc}")

    return call


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
